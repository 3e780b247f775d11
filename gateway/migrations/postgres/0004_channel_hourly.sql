-- Hourly rollups per channel; see migrations/sqlite/0012.
CREATE TABLE channel_hourly (
    site     TEXT   NOT NULL,
    node     TEXT   NOT NULL,
    channel  TEXT   NOT NULL,
    quantity TEXT   NOT NULL,
    hour     BIGINT NOT NULL,
    min      BIGINT NOT NULL,
    max      BIGINT NOT NULL,
    sum      BIGINT NOT NULL,
    count    BIGINT NOT NULL,
    PRIMARY KEY (site, node, channel, hour)
);
CREATE INDEX channel_hourly_site_quantity ON channel_hourly (site, quantity, hour);
