-- 基线学习: what each loop does when nothing is wrong, learned once over
-- the observation window from channel_hourly, with the setpoints
-- recommended from it (JSON: baseline::Baseline, baseline::Recommendation).
CREATE TABLE baselines (
    site           TEXT    NOT NULL,
    node           TEXT    NOT NULL,
    channel        TEXT    NOT NULL,
    quantity       TEXT    NOT NULL,
    learned_at     INTEGER NOT NULL,
    baseline       TEXT    NOT NULL,
    recommendation TEXT,
    PRIMARY KEY (site, node, channel)
);
CREATE TRIGGER baselines_no_update BEFORE UPDATE ON baselines
BEGIN SELECT RAISE(ABORT, 'a learned baseline is a record'); END;

-- 定值: setpoints applied at run time (an authorised, audited change, GB
-- 14287.5 §5.3.6). Append-only: the newest row per channel is in force.
CREATE TABLE setpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    site       TEXT    NOT NULL,
    node       TEXT    NOT NULL,
    channel    TEXT    NOT NULL,
    quantity   TEXT    NOT NULL,
    pre_alarm  INTEGER,
    alarm      INTEGER NOT NULL,
    source     TEXT    NOT NULL,
    applied_by TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
);
CREATE INDEX setpoints_channel ON setpoints (site, node, channel, id);
CREATE TRIGGER setpoints_no_update BEFORE UPDATE ON setpoints
BEGIN SELECT RAISE(ABORT, 'setpoints is append-only'); END;
CREATE TRIGGER setpoints_no_delete BEFORE DELETE ON setpoints
BEGIN SELECT RAISE(ABORT, 'setpoints is append-only'); END;
