-- High availability (issue 16): each replica says it is alive every few
-- seconds; the count of those seen lately is how many replicas share the
-- ingest partitions (a replica holding more than its share gives the rest
-- up). RabbitMQ cannot say it: with single active consumer, a quorum
-- queue counts only the active consumer.
CREATE TABLE replica_seen (
    replica TEXT   PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
