-- Loops, child executions, durable waits, webhook replies, retries and
-- per-workflow concurrency limits.

-- SQLite cannot change a table's constraints in place: the step table is
-- rebuilt with `item` (the element's index inside a `foreach` body, -1
-- outside) in the attempt's key, and WAITING (a sub_workflow step whose child
-- execution runs; no worker holds it) among the statuses.
CREATE TABLE step_runs_v3 (
    id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    item BIGINT NOT NULL DEFAULT -1,
    node_type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('QUEUED', 'RUNNING', 'WAITING', 'SUCCEEDED', 'FAILED', 'SKIPPED', 'CANCELLED', 'TIMED_OUT')),
    attempt BIGINT NOT NULL,
    priority BIGINT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    branch TEXT,
    error TEXT,
    logs TEXT,
    worker TEXT,
    queued_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    dispatched_at BIGINT,
    started_at BIGINT,
    heartbeat_at BIGINT,
    finished_at BIGINT,
    child_execution_id TEXT,
    UNIQUE (execution_id, node_id, item, attempt)
);
INSERT INTO step_runs_v3 (id, execution_id, node_id, item, node_type, status, attempt, priority,
    input, output, branch, error, logs, worker, queued_at, due_at, dispatched_at, started_at,
    heartbeat_at, finished_at)
SELECT id, execution_id, node_id, -1, node_type, status, attempt, priority, input, output, branch,
    error, logs, worker, queued_at, due_at, dispatched_at, started_at, heartbeat_at, finished_at
FROM step_runs;
DROP TABLE step_runs;
ALTER TABLE step_runs_v3 RENAME TO step_runs;
CREATE INDEX step_runs_undispatched ON step_runs (queued_at) WHERE status = 'QUEUED' AND dispatched_at IS NULL;
CREATE INDEX step_runs_running ON step_runs (heartbeat_at) WHERE status = 'RUNNING';

-- A child execution names the step waiting for it; `depth` bounds nesting.
ALTER TABLE executions ADD COLUMN parent_execution_id TEXT;
ALTER TABLE executions ADD COLUMN parent_step_id TEXT;
ALTER TABLE executions ADD COLUMN depth BIGINT NOT NULL DEFAULT 0;
-- The first webhook_response's reply, read by the waiting webhook request.
ALTER TABLE executions ADD COLUMN reply TEXT;
-- The execution this one retries.
ALTER TABLE executions ADD COLUMN retry_of TEXT;
-- 0 while waiting for a slot under the workflow's concurrency limit.
ALTER TABLE executions ADD COLUMN admitted BIGINT NOT NULL DEFAULT 1;
CREATE INDEX executions_children ON executions (parent_execution_id) WHERE parent_execution_id IS NOT NULL;
CREATE INDEX executions_waiting ON executions (workflow_id, priority, created_at) WHERE admitted = 0;
CREATE INDEX executions_by_workspace ON executions (workspace_id, id);

CREATE TABLE workflow_slots (
    workflow_id TEXT PRIMARY KEY,
    running BIGINT NOT NULL
);

CREATE TABLE cron_fires (
    workflow_id TEXT NOT NULL,
    trigger_key TEXT NOT NULL,
    fired_for BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, trigger_key)
);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
