CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    workflow_name TEXT NOT NULL,
    version BIGINT NOT NULL,
    -- The frozen definition of the version being run (from the workflow service).
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
    UNIQUE (workflow_id, idempotency_key)
);
-- Workflow.executions and Workflow.lastExecution page newest first.
CREATE INDEX executions_by_workflow ON executions (workflow_id, id);

CREATE TABLE step_runs (
    id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    node_type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('SUCCEEDED', 'FAILED')),
    attempt BIGINT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    worker TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    -- Recording a step result is idempotent: a redelivered task cannot record twice.
    UNIQUE (execution_id, node_id, attempt)
);

CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    trace TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    published_at BIGINT
);
CREATE INDEX outbox_pending ON outbox (occurred_at, id) WHERE published_at IS NULL;
