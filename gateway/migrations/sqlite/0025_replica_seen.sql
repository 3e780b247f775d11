-- Replicas alive lately (see migrations/postgres/0018). A single gateway
-- on SQLite never writes it; the table keeps both schemas alike.
CREATE TABLE replica_seen (
    replica TEXT    PRIMARY KEY,
    seen_at INTEGER NOT NULL
);
