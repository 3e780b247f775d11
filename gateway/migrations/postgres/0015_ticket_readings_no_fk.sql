-- Readings linked to open tickets are the busiest insert of an alarm storm
-- (every change of a channel's status with a ticket open on it). Their
-- foreign key to tickets cost a lookup per row for nothing: the store
-- inserts them joined to `tickets` in the same statement, and a ticket is
-- a record that is never removed, which the trigger below now makes a
-- rule of the database (a ticket is closed, 销号, never deleted).
ALTER TABLE ticket_readings DROP CONSTRAINT ticket_readings_ticket_id_fkey;

CREATE FUNCTION tickets_never_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tickets are closed, never removed';
END;
$$;
CREATE TRIGGER tickets_no_delete BEFORE DELETE ON tickets
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_never_removed();
CREATE TRIGGER tickets_no_truncate BEFORE TRUNCATE ON tickets
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_never_removed();
