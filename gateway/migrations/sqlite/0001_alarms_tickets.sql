-- Alarms (报警记录) and hazard tickets (隐患工单), with the ticket audit trail.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE tickets (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    number        TEXT    NOT NULL UNIQUE,          -- 编号, e.g. YH20261123-00001
    site          TEXT    NOT NULL,
    node          TEXT    NOT NULL,
    channel       TEXT    NOT NULL,                 -- '' for node-level causes
    cause         TEXT    NOT NULL,                 -- e.g. residual_current_high, fault
    source        TEXT    NOT NULL,                 -- sensor_alarm | sensor_fault | offline | inspection
    category      TEXT    NOT NULL,                 -- electrical_fire | device_fault | ...
    grade         TEXT    NOT NULL DEFAULT 'general', -- general (一般) | major (重大)
    status        TEXT    NOT NULL,                 -- pending_registration (待登记) ... closed (已销号)
    title         TEXT    NOT NULL,
    location      TEXT    NOT NULL DEFAULT '',
    opened_at     INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    closed_at     INTEGER,
    alarm_count   INTEGER NOT NULL DEFAULT 1,
    last_alarm_at INTEGER NOT NULL
);

-- One open ticket per (site, node, channel, cause): a re-raised alarm
-- attaches to it. Holds across gateway replicas sharing one database.
CREATE UNIQUE INDEX tickets_one_open ON tickets (site, node, channel, cause) WHERE status <> 'closed';
CREATE INDEX tickets_status ON tickets (status, opened_at);

-- 留痕: every change of a ticket, append-only.
CREATE TABLE ticket_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id   INTEGER NOT NULL REFERENCES tickets (id),
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,                   -- 'system' for automatic steps
    action      TEXT    NOT NULL,                   -- opened | alarm_attached | ...
    from_status TEXT,
    to_status   TEXT,
    note        TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX ticket_events_ticket ON ticket_events (ticket_id, id);

CREATE TRIGGER ticket_events_no_update BEFORE UPDATE ON ticket_events
BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END;
CREATE TRIGGER ticket_events_no_delete BEFORE DELETE ON ticket_events
BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END;

CREATE TABLE alarms (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    site        TEXT    NOT NULL,
    node        TEXT    NOT NULL,
    channel     TEXT    NOT NULL,                   -- '' for node-level alarms (offline)
    cause       TEXT    NOT NULL,
    kind        TEXT    NOT NULL,                   -- electrical_fire | fire_facility | fault | offline
    level       TEXT    NOT NULL,                   -- pre_alarm | alarm | fault | offline
    state       TEXT    NOT NULL,                   -- active | latched | cleared
    quantity    TEXT,
    value       INTEGER,
    setpoint    INTEGER,
    peak        INTEGER,
    raised_at   INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    cleared_at  INTEGER,
    acked_at    INTEGER,
    acked_by    TEXT,
    ticket_id   INTEGER REFERENCES tickets (id)
);

-- One standing alarm per (site, node, channel, cause).
CREATE UNIQUE INDEX alarms_one_standing ON alarms (site, node, channel, cause) WHERE state <> 'cleared';
CREATE INDEX alarms_state ON alarms (state, raised_at);
CREATE INDEX alarms_ticket ON alarms (ticket_id);
