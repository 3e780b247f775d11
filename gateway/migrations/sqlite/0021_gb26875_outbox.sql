-- GB/T 26875.3 northbound (消防远程监控中心): the outbox of data units
-- for each (centre, site) link, in the order they are to reach the centre.
-- A row is confirmed when the centre confirms it (命令 3) and pruned a week
-- later; `subject` keeps an event from being queued twice (the event
-- stream and the store's re-read both see it). `fire` rows are never
-- dropped when the outbox is full.
CREATE TABLE gb26875_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    centre       TEXT    NOT NULL,
    site         TEXT    NOT NULL,
    subject      TEXT    NOT NULL,            -- alarm:12:raise:alarm, alarm:12:clear, state:…, analog:…
    alarm_id     INTEGER,
    unit_hex     TEXT    NOT NULL,            -- the application data unit
    fire         INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    confirmed_at INTEGER,
    UNIQUE (centre, site, subject)
);
CREATE INDEX gb26875_outbox_pending ON gb26875_outbox (centre, site, confirmed_at, id);
