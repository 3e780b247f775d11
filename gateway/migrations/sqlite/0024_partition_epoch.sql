-- Who holds each ingest partition (see migrations/postgres/0017). A single
-- gateway on SQLite never partitions its ingest; the table keeps both
-- schemas alike.
CREATE TABLE partition_epoch (
    partition INTEGER PRIMARY KEY,
    epoch     INTEGER NOT NULL,
    holder    TEXT    NOT NULL,
    taken_at  INTEGER NOT NULL
);
