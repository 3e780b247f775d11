-- High availability (issue 16): who holds each ingest partition, and since
-- which epoch. A replica whose consumer becomes active on a partition takes
-- it (epoch + 1, itself as holder) before handling its messages; every
-- batch it commits for the partition checks, inside the transaction, that
-- the epoch is still the one it took, so a replica that lost its consumer
-- but still reaches the database cannot commit after another took over.
CREATE TABLE partition_epoch (
    partition INTEGER PRIMARY KEY,
    epoch     BIGINT  NOT NULL,
    holder    TEXT    NOT NULL,
    taken_at  BIGINT  NOT NULL
);
