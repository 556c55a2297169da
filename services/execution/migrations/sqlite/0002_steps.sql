-- Step runs become the engine's schedule: one row per attempt of a node, created
-- QUEUED when the node becomes ready, claimed (RUNNING) by one worker at a time under
-- a heartbeat lease, and settled once. SQLite cannot alter a CHECK: rebuild.
CREATE TABLE step_runs_v2 (
    id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    node_type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'SKIPPED', 'CANCELLED', 'TIMED_OUT')),
    attempt BIGINT NOT NULL,
    priority BIGINT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    -- The branch a branching node took.
    branch TEXT,
    error TEXT,
    -- A JSON array of log lines.
    logs TEXT,
    worker TEXT,
    queued_at BIGINT NOT NULL,
    -- Not to start before (retries with backoff).
    due_at BIGINT NOT NULL,
    -- Set once its task is on the queue; the sweeper sends what stays unset.
    dispatched_at BIGINT,
    started_at BIGINT,
    heartbeat_at BIGINT,
    finished_at BIGINT,
    UNIQUE (execution_id, node_id, attempt)
);
INSERT INTO step_runs_v2 (id, execution_id, node_id, node_type, status, attempt, priority, input,
    output, error, worker, queued_at, due_at, dispatched_at, started_at, heartbeat_at, finished_at)
SELECT id, execution_id, node_id, node_type, status, attempt, 0, input,
    output, error, worker, started_at, started_at, started_at, started_at, finished_at, finished_at
FROM step_runs;
DROP TABLE step_runs;
ALTER TABLE step_runs_v2 RENAME TO step_runs;
CREATE INDEX step_runs_undispatched ON step_runs (queued_at) WHERE status = 'QUEUED' AND dispatched_at IS NULL;
CREATE INDEX step_runs_running ON step_runs (heartbeat_at) WHERE status = 'RUNNING';

-- The idempotency key lives in its own table on both backends (PostgreSQL partitions
-- executions by month, and a partitioned table's unique keys must include the month).
CREATE TABLE execution_keys (
    workflow_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (workflow_id, idempotency_key)
);
INSERT INTO execution_keys SELECT workflow_id, idempotency_key, id FROM executions
    WHERE idempotency_key IS NOT NULL;
