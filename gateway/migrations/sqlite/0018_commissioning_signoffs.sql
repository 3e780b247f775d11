-- 调试验收签字: the site manager's sign-off of a commissioning report,
-- fixing the report's SHA-256. Append-only: part of the site's record.
CREATE TABLE commissioning_signoffs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    site          TEXT    NOT NULL,
    signed_by     TEXT    NOT NULL,
    signed_at     INTEGER NOT NULL,
    note          TEXT    NOT NULL,
    report_sha256 TEXT    NOT NULL,
    report        TEXT    NOT NULL
);
CREATE INDEX commissioning_signoffs_site ON commissioning_signoffs (site, id);
CREATE TRIGGER commissioning_signoffs_no_update BEFORE UPDATE ON commissioning_signoffs
BEGIN SELECT RAISE(ABORT, 'commissioning_signoffs is append-only'); END;
CREATE TRIGGER commissioning_signoffs_no_delete BEFORE DELETE ON commissioning_signoffs
BEGIN SELECT RAISE(ABORT, 'commissioning_signoffs is append-only'); END;
