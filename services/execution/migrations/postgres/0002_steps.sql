-- Step runs become the engine's schedule: one row per attempt of a node, created
-- QUEUED when the node becomes ready, claimed (RUNNING) by one worker at a time under
-- a heartbeat lease, and settled once.
ALTER TABLE step_runs DROP CONSTRAINT IF EXISTS step_runs_execution_id_fkey;
ALTER TABLE step_runs DROP CONSTRAINT IF EXISTS step_runs_status_check;
ALTER TABLE step_runs ADD CONSTRAINT step_runs_status_check
    CHECK (status IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'SKIPPED', 'CANCELLED', 'TIMED_OUT'));
ALTER TABLE step_runs ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
ALTER TABLE step_runs ADD COLUMN branch TEXT;
ALTER TABLE step_runs ADD COLUMN logs TEXT;
ALTER TABLE step_runs ADD COLUMN queued_at BIGINT;
ALTER TABLE step_runs ADD COLUMN due_at BIGINT;
ALTER TABLE step_runs ADD COLUMN dispatched_at BIGINT;
ALTER TABLE step_runs ADD COLUMN heartbeat_at BIGINT;
UPDATE step_runs SET queued_at = started_at, due_at = started_at, dispatched_at = started_at, heartbeat_at = finished_at;
ALTER TABLE step_runs ALTER COLUMN queued_at SET NOT NULL;
ALTER TABLE step_runs ALTER COLUMN due_at SET NOT NULL;
ALTER TABLE step_runs ALTER COLUMN worker DROP NOT NULL;
ALTER TABLE step_runs ALTER COLUMN started_at DROP NOT NULL;
ALTER TABLE step_runs ALTER COLUMN finished_at DROP NOT NULL;
CREATE INDEX step_runs_by_execution ON step_runs (execution_id);
CREATE INDEX step_runs_undispatched ON step_runs (queued_at) WHERE status = 'QUEUED' AND dispatched_at IS NULL;
CREATE INDEX step_runs_running ON step_runs (heartbeat_at) WHERE status = 'RUNNING';

-- Executions are partitioned by month of creation (`created_at`, epoch milliseconds),
-- so old months can be detached or dropped whole. A partitioned table's unique keys
-- must include the partition key, so the idempotency key moves to a table of its own.
CREATE TABLE executions_v2 (
    id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    workflow_name TEXT NOT NULL,
    version BIGINT NOT NULL,
    definition TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')),
    trigger_kind TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    priority BIGINT NOT NULL,
    idempotency_key TEXT,
    triggered_by TEXT NOT NULL,
    steps_total BIGINT NOT NULL,
    steps_done BIGINT NOT NULL DEFAULT 0,
    artifact_file_id TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
-- Rows outside every monthly partition land here rather than fail.
CREATE TABLE executions_default PARTITION OF executions_v2 DEFAULT;
-- This month and the next two; the service keeps creating months ahead.
DO $$
DECLARE
    m DATE := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
BEGIN
    FOR i IN 0..2 LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF executions_v2 FOR VALUES FROM (%s) TO (%s)',
            'executions_' || to_char(m + make_interval(months => i), 'YYYY_MM'),
            (extract(epoch FROM (m + make_interval(months => i))::timestamp AT TIME ZONE 'UTC') * 1000)::bigint,
            (extract(epoch FROM (m + make_interval(months => i + 1))::timestamp AT TIME ZONE 'UTC') * 1000)::bigint);
    END LOOP;
END $$;
INSERT INTO executions_v2 SELECT id, workspace_id, workflow_id, workflow_name, version, definition, status,
    trigger_kind, input, output, error, priority, idempotency_key, triggered_by, steps_total, steps_done,
    artifact_file_id, created_at, started_at, finished_at FROM executions;

CREATE TABLE execution_keys (
    workflow_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (workflow_id, idempotency_key)
);
INSERT INTO execution_keys SELECT workflow_id, idempotency_key, id FROM executions
    WHERE idempotency_key IS NOT NULL;
DROP TABLE executions;
ALTER TABLE executions_v2 RENAME TO executions;
CREATE INDEX executions_by_workflow ON executions (workflow_id, id);
CREATE INDEX executions_by_id ON executions (id);
