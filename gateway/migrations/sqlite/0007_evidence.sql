-- Evidence (整改佐证): notes and photos/documents attached to a ticket.
-- Files are stored once, by content hash, under {data_dir}/evidence/.
CREATE TABLE ticket_evidence (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id    INTEGER NOT NULL REFERENCES tickets (id),
    at           INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,          -- note | file
    media_type   TEXT,                      -- image/jpeg, image/png, image/webp, application/pdf
    size         INTEGER,
    content_hash TEXT,                      -- SHA-256 of the file
    note         TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX ticket_evidence_ticket ON ticket_evidence (ticket_id, id);
CREATE INDEX ticket_evidence_hash ON ticket_evidence (content_hash);
CREATE TRIGGER ticket_evidence_no_update BEFORE UPDATE ON ticket_evidence
BEGIN SELECT RAISE(ABORT, 'ticket_evidence is append-only'); END;
CREATE TRIGGER ticket_evidence_no_delete BEFORE DELETE ON ticket_evidence
BEGIN SELECT RAISE(ABORT, 'ticket_evidence is append-only'); END;
