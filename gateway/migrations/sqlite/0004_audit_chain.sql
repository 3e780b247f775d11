-- The audit trail (留痕) of operator actions and ticket steps, chained by
-- hashes: each record's hash covers its fields and the previous record's
-- hash, so editing or deleting a past record breaks the chain, and
-- `gateway audit verify` names the first broken record.

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,                  -- 1, 2, 3, … without gaps
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    role      TEXT    NOT NULL,
    action    TEXT    NOT NULL,                     -- ticket.register, alarm.ack, alarm.reset, rules.change, …
    subject   TEXT    NOT NULL,                     -- ticket:12, alarm:7, rules:sites.home_a.rules.temperature
    details   TEXT    NOT NULL,                     -- JSON
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
