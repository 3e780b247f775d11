-- Deadlines (整改期限) passed: flagged, escalated to the supervising unit.
ALTER TABLE tickets ADD COLUMN overdue_at   INTEGER;   -- first seen past its deadline
ALTER TABLE tickets ADD COLUMN escalated_to TEXT;      -- 督办单位, or the bureau when none
