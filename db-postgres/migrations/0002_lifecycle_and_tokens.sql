-- On PostgreSQL the lifecycle and the launch tokens came with 0001 (SQLite added them here).
-- This number is kept so that both backends number their migrations alike.
SELECT 1;
