-- One row per finished execution, written from `execution.succeeded` and
-- `execution.failed` events. The primary key makes consumption idempotent.
CREATE TABLE facts (
    execution_id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('SUCCEEDED', 'FAILED')),
    duration_ms BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    triggered_by TEXT NOT NULL
);
-- Percentiles walk a workflow's durations in order; the last run reads the max.
CREATE INDEX facts_by_workflow_duration ON facts (workflow_id, duration_ms);
CREATE INDEX facts_by_workflow_finished ON facts (workflow_id, finished_at);
CREATE INDEX facts_by_workspace_finished ON facts (workspace_id, finished_at);

-- Per workflow and hour (by finish time), maintained in the transaction that
-- inserts a new fact, so it always equals an aggregate over `facts`.
CREATE TABLE hourly_rollups (
    workflow_id TEXT NOT NULL,
    hour_start BIGINT NOT NULL,
    workspace_id TEXT NOT NULL,
    runs BIGINT NOT NULL,
    succeeded BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    total_duration_ms BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, hour_start)
);
CREATE INDEX hourly_rollups_by_workspace ON hourly_rollups (workspace_id, hour_start);
