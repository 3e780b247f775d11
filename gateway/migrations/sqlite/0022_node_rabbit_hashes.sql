-- RabbitMQ's own hash of each node's MQTT password (issue 16: nodes on a
-- RabbitMQ cluster). RabbitMQ's internal user database accepts only its
-- salted single SHA-256 (`rabbit_password_hashing_sha256`), not the `$7$`
-- PBKDF2 hash in node_credentials, so the hash is made once more when the
-- password is issued (the only time the gateway sees it) and kept here for
-- `gateway rabbitmq-sync`. Passwords are 192 random bits, so one SHA-256
-- round is no weaker in practice. Credentials issued before this table
-- existed have no row: rotate them to use RabbitMQ.
CREATE TABLE node_rabbit_hashes (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    set_at        BIGINT NOT NULL
);
