-- Each node's de-duplication window on (boot, seq), saved with every
-- batch that moved it, in the same transaction as the alarms the batch
-- raised: after a crash, a message whose acknowledgement was lost is
-- recognised when the broker (or the node) sends it again.
CREATE TABLE node_seq (
    site  TEXT NOT NULL,
    node  TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (site, node)
);
