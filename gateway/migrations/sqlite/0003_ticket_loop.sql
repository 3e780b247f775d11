-- The closed loop's fields (隐患闭环): 五落实, 挂牌督办, review, extension.

ALTER TABLE tickets ADD COLUMN sensor_sourced      INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tickets ADD COLUMN deadline            INTEGER;          -- 时限 in force
ALTER TABLE tickets ADD COLUMN responsible_unit    TEXT;             -- 责任单位
ALTER TABLE tickets ADD COLUMN responsible_person  TEXT;             -- 责任人
ALTER TABLE tickets ADD COLUMN measures            TEXT;             -- 整改措施
ALTER TABLE tickets ADD COLUMN funds               TEXT;             -- 资金
ALTER TABLE tickets ADD COLUMN contingency_plan    TEXT;             -- 预案
ALTER TABLE tickets ADD COLUMN supervisor          TEXT;             -- 督办单位
ALTER TABLE tickets ADD COLUMN document_no         TEXT;             -- 文号
ALTER TABLE tickets ADD COLUMN listed_at           INTEGER;          -- 挂牌
ALTER TABLE tickets ADD COLUMN delisted_at         INTEGER;          -- 摘牌
ALTER TABLE tickets ADD COLUMN rectified_at        INTEGER;          -- 整改完成报告
ALTER TABLE tickets ADD COLUMN reviewed            INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tickets ADD COLUMN extension_requested INTEGER;          -- 申请延期至

ALTER TABLE ticket_events ADD COLUMN role TEXT;
ALTER TABLE ticket_events ADD COLUMN details TEXT;                   -- the action as JSON
