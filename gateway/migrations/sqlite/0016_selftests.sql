-- 自检: end-to-end self-tests of nodes. A row is written when the test
-- starts (result 'running') and completed once when it ends; the per-channel
-- results (pass/fail, path latency, reason) are a JSON array.
CREATE TABLE selftests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    site         TEXT    NOT NULL,
    node         TEXT    NOT NULL,
    mode         TEXT    NOT NULL,
    requested_by TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    result       TEXT    NOT NULL DEFAULT 'running',
    channels     TEXT    NOT NULL DEFAULT '[]',
    reason       TEXT
);
CREATE INDEX selftests_node ON selftests (site, node, id);
-- A finished test is a record: it cannot change again or be deleted.
CREATE TRIGGER selftests_finished_once BEFORE UPDATE ON selftests
WHEN OLD.finished_at IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'a finished self-test is a record'); END;
CREATE TRIGGER selftests_no_delete BEFORE DELETE ON selftests
BEGIN SELECT RAISE(ABORT, 'selftests is append-only'); END;
