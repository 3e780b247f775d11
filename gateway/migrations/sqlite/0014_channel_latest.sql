-- Each channel's latest measured reading, saved every minute with the
-- hourly rollups: the duty desk's "last reading" per node.
CREATE TABLE channel_latest (
    site     TEXT    NOT NULL,
    node     TEXT    NOT NULL,
    channel  TEXT    NOT NULL,
    quantity TEXT    NOT NULL,
    value    INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (site, node, channel)
);
