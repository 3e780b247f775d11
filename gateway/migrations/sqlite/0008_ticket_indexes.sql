-- Found by `cargo bench -p gateway --bench tickets` (100 sites, 100,000
-- tickets): the reopen check scanned every closed ticket, and the open list
-- of a bureau scanned all tickets.
CREATE INDEX tickets_closed_by_key ON tickets (site, node, channel, cause, closed_at) WHERE status = 'closed';
CREATE INDEX tickets_open_by_time ON tickets (opened_at) WHERE status <> 'closed';
