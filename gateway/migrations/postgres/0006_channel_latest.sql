-- Each channel's latest measured reading; see migrations/sqlite/0014.
CREATE TABLE channel_latest (
    site     TEXT   NOT NULL,
    node     TEXT   NOT NULL,
    channel  TEXT   NOT NULL,
    quantity TEXT   NOT NULL,
    value    BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (site, node, channel)
);
