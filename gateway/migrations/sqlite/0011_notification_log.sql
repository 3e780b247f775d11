-- Every notification delivery attempt (推送记录): which message, which
-- channel, what the vendor answered. One row per message per attempt; a
-- grouped send ("…等 N 条报警") logs each message it carried.
CREATE TABLE notification_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    site       TEXT    NOT NULL,
    channel    TEXT    NOT NULL,             -- the channel's name; '-' when unrouted
    subject    TEXT    NOT NULL,             -- alarm:12:raised:duty, ticket:3:overdue:bureau, …
    alarm_id   INTEGER,
    ticket_id  INTEGER,
    outcome    TEXT    NOT NULL,             -- delivered | rate_limited | refused | failed | gave_up | unrouted
    detail     TEXT    NOT NULL DEFAULT '',  -- the vendor's code and message
    group_size INTEGER NOT NULL,             -- messages in the send
    attempt    INTEGER NOT NULL,
    text       TEXT    NOT NULL
);
CREATE INDEX notification_log_site ON notification_log (site, id);
CREATE INDEX notification_log_alarm ON notification_log (alarm_id);
