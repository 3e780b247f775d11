-- Node registration and node MQTT credentials; see migrations/sqlite/0015.
CREATE TABLE registered_sites (
    id         TEXT   PRIMARY KEY,
    name       TEXT   NOT NULL,
    created_by TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE registered_nodes (
    site       TEXT   NOT NULL,
    node       TEXT   NOT NULL,
    building   TEXT   NOT NULL,
    floor      TEXT   NOT NULL,
    room       TEXT   NOT NULL,
    panel      TEXT   NOT NULL,
    channels   TEXT   NOT NULL,
    created_by TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    PRIMARY KEY (site, node)
);

CREATE TABLE node_credentials (
    username      TEXT   PRIMARY KEY,
    site          TEXT   NOT NULL,
    node          TEXT   NOT NULL,
    password_hash TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    rotated_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);

CREATE TABLE registry_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO registry_version (id, version) VALUES (1, 0);
