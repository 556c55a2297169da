-- Loops, child executions, durable waits, webhook replies, retries and
-- per-workflow concurrency limits.

-- A step inside a `foreach` body runs once per item: `item` is the element's
-- index (-1 outside loops), part of the attempt's key.
ALTER TABLE step_runs ADD COLUMN item BIGINT NOT NULL DEFAULT -1;
ALTER TABLE step_runs DROP CONSTRAINT IF EXISTS step_runs_execution_id_node_id_attempt_key;
ALTER TABLE step_runs ADD CONSTRAINT step_runs_attempt_key UNIQUE (execution_id, node_id, item, attempt);
-- WAITING: a sub_workflow step whose child execution runs; no worker holds it.
ALTER TABLE step_runs DROP CONSTRAINT IF EXISTS step_runs_status_check;
ALTER TABLE step_runs ADD CONSTRAINT step_runs_status_check
    CHECK (status IN ('QUEUED', 'RUNNING', 'WAITING', 'SUCCEEDED', 'FAILED', 'SKIPPED', 'CANCELLED', 'TIMED_OUT'));
ALTER TABLE step_runs ADD COLUMN child_execution_id TEXT;

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

-- Executions of a workflow with a concurrency limit that hold a slot now. The
-- row is also the lock that serialises admissions for the workflow.
CREATE TABLE workflow_slots (
    workflow_id TEXT PRIMARY KEY,
    running BIGINT NOT NULL
);

-- Cron: the last time each trigger fired, and the lease of the one scheduler
-- allowed to fire across replicas.
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
