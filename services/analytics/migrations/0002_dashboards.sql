-- Dashboards: every outcome of executions and steps, who was active, and rollups at
-- three grains (minute, quarter-hour, UTC day), per workspace and per workflow.
--
-- Facts are written by the event consumer (idempotently: keyed on the event's subject)
-- together with a row in `unrolled_*`; the roller folds unrolled facts into the rollups
-- in batches and deletes their `unrolled_*` rows in the same transaction, so each fact
-- is counted exactly once whatever the order or repetition of events.

-- Every finished execution (replaces `facts`, which knew SUCCEEDED and FAILED only).
CREATE TABLE execution_facts (
    execution_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')),
    -- The user who started it (the nil UUID for runs without one).
    triggered_by TEXT NOT NULL,
    finished_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    error TEXT
);
INSERT INTO execution_facts (execution_id, workspace_id, workflow_id, status, triggered_by, finished_at, duration_ms)
    SELECT execution_id, workspace_id, workflow_id, status, triggered_by, finished_at, duration_ms FROM facts;
DROP TABLE hourly_rollups;
DROP TABLE facts;
CREATE INDEX execution_facts_by_workspace ON execution_facts (workspace_id, finished_at);
CREATE INDEX execution_facts_by_workflow ON execution_facts (workflow_id, finished_at);

-- Every ended attempt of a step.
CREATE TABLE step_facts (
    step_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    node_type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('SUCCEEDED', 'FAILED', 'TIMED_OUT')),
    attempt BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    queue_wait_ms BIGINT NOT NULL
);
CREATE INDEX step_facts_by_workspace ON step_facts (workspace_id, finished_at);

-- Who was active when: a user started a run, edited or published a workflow in a
-- quarter-hour. Keyed so that repeated acts (and repeated events) are one row.
CREATE TABLE activity (
    workspace_id TEXT NOT NULL,
    bucket_start BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('STARTED', 'EDITED', 'PUBLISHED')),
    PRIMARY KEY (workspace_id, bucket_start, user_id, kind)
);

-- Facts not yet folded into the rollups. The facts kept from before are queued, so the
-- roller builds their rollups (the hourly ones dropped above).
CREATE TABLE unrolled_executions (execution_id TEXT PRIMARY KEY);
CREATE TABLE unrolled_steps (step_id TEXT PRIMARY KEY);
INSERT INTO unrolled_executions (execution_id) SELECT execution_id FROM execution_facts;

-- Executions per bucket. `workflow_id` is '' on the row of the whole workspace.
-- `durations` is a DDSketch of the runs' durations (base64; see `domain::sketch`).
CREATE TABLE execution_rollups (
    workspace_id TEXT NOT NULL,
    grain TEXT NOT NULL CHECK (grain IN ('MINUTE', 'QUARTER', 'DAY')),
    workflow_id TEXT NOT NULL,
    bucket_start BIGINT NOT NULL,
    runs BIGINT NOT NULL,
    succeeded BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    cancelled BIGINT NOT NULL,
    timed_out BIGINT NOT NULL,
    total_duration_ms BIGINT NOT NULL,
    durations TEXT NOT NULL,
    PRIMARY KEY (workspace_id, grain, workflow_id, bucket_start)
);
CREATE INDEX execution_rollups_by_bucket ON execution_rollups (workspace_id, grain, bucket_start);

-- Step attempts per bucket, at three levels: a node of a workflow (`workflow_id`,
-- `node_id` and `node_type` set), a node type across the workspace (only `node_type`
-- set) and every step of the workspace (all three '').
CREATE TABLE step_rollups (
    workspace_id TEXT NOT NULL,
    grain TEXT NOT NULL CHECK (grain IN ('MINUTE', 'QUARTER', 'DAY')),
    workflow_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    node_type TEXT NOT NULL,
    bucket_start BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    retries BIGINT NOT NULL,
    total_duration_ms BIGINT NOT NULL,
    total_queue_wait_ms BIGINT NOT NULL,
    max_duration_ms BIGINT NOT NULL,
    durations TEXT NOT NULL,
    queue_waits TEXT NOT NULL,
    PRIMARY KEY (workspace_id, grain, workflow_id, node_id, node_type, bucket_start)
);
CREATE INDEX step_rollups_by_bucket ON step_rollups (workspace_id, grain, bucket_start);

-- A failing workflow's recoveries: its first failed (or timed-out) run after a success (or
-- ever), and the next succeeded run. Rebuilt by the roller for the span of every batch of
-- facts it rolls (see `store::recoveries`), so late runs land right.
CREATE TABLE recoveries (
    workflow_id TEXT NOT NULL,
    failed_at BIGINT NOT NULL,
    workspace_id TEXT NOT NULL,
    recovered_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, failed_at)
);
CREATE INDEX recoveries_by_workspace ON recoveries (workspace_id, recovered_at);

-- One row per retention period that a replica claimed: the cleanup of a period runs once
-- across replicas.
CREATE TABLE cleanup_runs (
    period BIGINT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    deleted BIGINT
);

-- What worker pools reported about themselves (`worker.sampled`): one row per report, so
-- a repeated report is folded once.
CREATE TABLE worker_samples (
    worker_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (worker_id, at)
);

-- The fleet's worker pools per bucket: slot time and busy time (for utilisation),
-- finished steps (throughput), and the step queue's backlog (the largest reported, and
-- the sum of reports for the average). Folded in the transaction that records a report.
CREATE TABLE pool_rollups (
    grain TEXT NOT NULL CHECK (grain IN ('MINUTE', 'QUARTER', 'DAY')),
    bucket_start BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    slot_ms BIGINT NOT NULL,
    busy_ms BIGINT NOT NULL,
    steps BIGINT NOT NULL,
    backlog_sum BIGINT NOT NULL,
    backlog_max BIGINT NOT NULL,
    PRIMARY KEY (grain, bucket_start)
);
