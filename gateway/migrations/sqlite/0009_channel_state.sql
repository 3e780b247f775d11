-- Each channel's rule state (level, latch, delays, rate and flapping state),
-- saved whenever a rule output changes it, so a restarted gateway carries on
-- where it stopped: a pre-alarm that ends after a restart clears.
CREATE TABLE channel_state (
    site       TEXT    NOT NULL,
    node       TEXT    NOT NULL,
    channel    TEXT    NOT NULL,
    quantity   TEXT    NOT NULL,
    state      TEXT    NOT NULL,                -- rules::ChannelState as JSON
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (site, node, channel)
);
