-- A ticket (a hazard's record, 登记 → 销号) is closed, never removed; the
-- PostgreSQL schema says the same (migrations/postgres/0015), where it
-- also lets linked readings go without a per-row foreign-key lookup.
CREATE TRIGGER tickets_no_delete BEFORE DELETE ON tickets
BEGIN
    SELECT RAISE(ABORT, 'tickets are closed, never removed');
END;
