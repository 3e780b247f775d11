-- An alarm storm inserts tens of thousands of alarm rows a minute, most of
-- them linked to their channel's open ticket; the foreign key from
-- `alarms.ticket_id` cost a `SELECT … FOR KEY SHARE` on `tickets` per row
-- (8 % of PostgreSQL's time in the storm). The store sets `ticket_id` only
-- to a ticket it has just found open, opened or reopened in the same
-- transaction, and tickets are never removed (0015), so the key checked
-- nothing that can happen.
ALTER TABLE alarms DROP CONSTRAINT alarms_ticket_id_fkey;
