-- Parity with the SQLite set (tests/migrations.rs compares them):
-- step_runs.priority had a default here only; every insert names it.
ALTER TABLE step_runs ALTER COLUMN priority DROP DEFAULT;
-- The UNIQUE (execution_id, node_id, item, attempt) index already serves lookups by
-- execution, as it does on SQLite; this one only slowed writes.
DROP INDEX IF EXISTS step_runs_by_execution;
