-- The client certificate issued to a node by the gateway's node CA
-- (`gateway node add|rotate --cert`), known by the SHA-256 of its DER:
-- a TLS login on the gate (port 8883) with a certificate of the node CA is
-- that node only while its fingerprint is the one here and the node's
-- credential (node_credentials) is not revoked. A new certificate replaces
-- the row, so the one it supersedes stops working.
CREATE TABLE node_certificates (
    username  TEXT   PRIMARY KEY,   -- {site}.{node}, the certificate's CN
    site      TEXT   NOT NULL,
    node      TEXT   NOT NULL,
    sha256    TEXT   NOT NULL UNIQUE,
    serial    TEXT   NOT NULL,
    not_after INTEGER NOT NULL,      -- ms since the epoch
    issued_at INTEGER NOT NULL
);
