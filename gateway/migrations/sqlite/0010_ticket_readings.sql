-- Readings linked to open tickets (关联读数): while a ticket on a channel is
-- open, the channel's readings are kept with it — every abnormal one (at
-- most one a minute) and a normal one every 15 minutes — so the ticket shows
-- what the data said during rectification and the proof period, and a
-- refused 销号 can name the offending readings.
CREATE TABLE ticket_readings (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id INTEGER NOT NULL REFERENCES tickets (id),
    at        INTEGER NOT NULL,
    quantity  TEXT    NOT NULL,
    value     INTEGER NOT NULL,
    status    TEXT    NOT NULL,                 -- the channel status on the wire: ok, open, short, …
    level     TEXT    NOT NULL,                 -- normal | pre_alarm | alarm (the rules' level)
    abnormal  INTEGER NOT NULL                  -- status not ok, or level not normal
);
CREATE INDEX ticket_readings_ticket ON ticket_readings (ticket_id, at);
CREATE TRIGGER ticket_readings_no_update BEFORE UPDATE ON ticket_readings
BEGIN SELECT RAISE(ABORT, 'ticket_readings is append-only'); END;
CREATE TRIGGER ticket_readings_no_delete BEFORE DELETE ON ticket_readings
BEGIN SELECT RAISE(ABORT, 'ticket_readings is append-only'); END;
