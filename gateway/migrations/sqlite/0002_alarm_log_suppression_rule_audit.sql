-- Every rule transition, including the suppressed and flapping ones that do
-- not notify anyone (抑制/抖动记录), and the audit of setpoint changes
-- (GB 14287.5 §5.3.6). Both append-only.

ALTER TABLE alarms ADD COLUMN suppressed INTEGER NOT NULL DEFAULT 0;  -- raised while its root cause stood
ALTER TABLE alarms ADD COLUMN flapping   INTEGER NOT NULL DEFAULT 0;  -- the channel is flapping

CREATE TABLE alarm_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    site        TEXT    NOT NULL,
    node        TEXT    NOT NULL,                   -- '' for site-level transitions
    channel     TEXT    NOT NULL,                   -- '' for node- and site-level transitions
    cause       TEXT    NOT NULL,
    transition  TEXT    NOT NULL,                   -- raised, escalated, cleared, latched, reset, fault_raised, offline, uplink_lost, …
    level       TEXT,
    value       INTEGER,
    disposition TEXT    NOT NULL,                   -- notify | suppressed | flapping
    actor       TEXT    NOT NULL DEFAULT 'system'   -- who, for operator actions (复位)
);
CREATE INDEX alarm_log_key ON alarm_log (site, node, channel, at);

CREATE TRIGGER alarm_log_no_update BEFORE UPDATE ON alarm_log
BEGIN SELECT RAISE(ABORT, 'alarm_log is append-only'); END;
CREATE TRIGGER alarm_log_no_delete BEFORE DELETE ON alarm_log
BEGIN SELECT RAISE(ABORT, 'alarm_log is append-only'); END;

-- The rule settings in force, per scope, as last seen; compared at start-up.
CREATE TABLE rule_settings (
    scope       TEXT    PRIMARY KEY,                -- e.g. 'home_a/n01/rc1 residual_current'
    settings    TEXT    NOT NULL,                   -- canonical JSON
    updated_at  INTEGER NOT NULL
);

CREATE TABLE rule_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,                   -- 'config:<file>' for a configuration change, else the operator
    scope       TEXT    NOT NULL,
    old         TEXT,                               -- canonical JSON, NULL when the scope is new
    new         TEXT                                -- NULL when the scope was removed
);
CREATE TRIGGER rule_changes_no_update BEFORE UPDATE ON rule_changes
BEGIN SELECT RAISE(ABORT, 'rule_changes is append-only'); END;
CREATE TRIGGER rule_changes_no_delete BEFORE DELETE ON rule_changes
BEGIN SELECT RAISE(ABORT, 'rule_changes is append-only'); END;
