-- 交接班记录: what the outgoing duty officer hands over to the next shift.
-- Append-only: a handover note is a record, corrected by a later note.
CREATE TABLE shift_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    site   TEXT    NOT NULL,
    author TEXT    NOT NULL,
    role   TEXT    NOT NULL,
    text   TEXT    NOT NULL
);
CREATE INDEX shift_log_site ON shift_log (site, id);
CREATE TRIGGER shift_log_no_update BEFORE UPDATE ON shift_log
BEGIN SELECT RAISE(ABORT, 'shift_log is append-only'); END;
CREATE TRIGGER shift_log_no_delete BEFORE DELETE ON shift_log
BEGIN SELECT RAISE(ABORT, 'shift_log is append-only'); END;
