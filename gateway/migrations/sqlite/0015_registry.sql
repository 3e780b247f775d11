-- Node registration (节点登记): sites and nodes added by installers beside
-- those of the configuration file, and each node's MQTT credentials.
CREATE TABLE registered_sites (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- An id is never reused: a revoked node keeps its row (and its history).
CREATE TABLE registered_nodes (
    site       TEXT    NOT NULL,
    node       TEXT    NOT NULL,
    building   TEXT    NOT NULL,          -- 楼栋
    floor      TEXT    NOT NULL,          -- 楼层
    room       TEXT    NOT NULL,          -- 房间
    panel      TEXT    NOT NULL,          -- 配电箱
    channels   TEXT    NOT NULL,          -- JSON: [{"id","quantity","ct_ratio"|"sensor"}]
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    PRIMARY KEY (site, node)
);

-- MQTT credentials of nodes, registered or declared in the file. Only the
-- Mosquitto `$7$` hash of the password is stored.
CREATE TABLE node_credentials (
    username      TEXT    PRIMARY KEY,    -- {site}.{node}
    site          TEXT    NOT NULL,
    node          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    rotated_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);

-- Bumped by every registration change, so a running gateway notices changes
-- made by another process (the CLI) with one cheap read.
CREATE TABLE registry_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO registry_version (id, version) VALUES (1, 0);
