-- Hourly rollups per channel (每回路每小时), kept by the gateway for trends
-- without a time-series DB: min, max, sum and count of the measured values.
CREATE TABLE channel_hourly (
    site     TEXT    NOT NULL,
    node     TEXT    NOT NULL,
    channel  TEXT    NOT NULL,
    quantity TEXT    NOT NULL,
    hour     INTEGER NOT NULL,                  -- start of the hour, ms since the epoch
    min      INTEGER NOT NULL,
    max      INTEGER NOT NULL,
    sum      INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (site, node, channel, hour)
);
CREATE INDEX channel_hourly_site_quantity ON channel_hourly (site, quantity, hour);
