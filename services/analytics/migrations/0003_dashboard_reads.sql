-- Reads that a dashboard makes many times stay small as the history grows: every query
-- reads rollups or per-workflow summaries, none scans the facts of a range.

-- Rankings by p95 (slowest nodes and node types) skip subjects that cannot make the cut
-- without reading their sketches. The longest attempt was the bound they used; a rollup's
-- p95 ceiling (see `Sketch::quantile_ceiling`) is a far tighter one: no range's p95 of a
-- subject is above the largest ceiling of its rollups in that range.
ALTER TABLE step_rollups ADD COLUMN p95_ceiling_ms BIGINT NOT NULL DEFAULT 0;
-- Rows rolled before this migration: twice the longest attempt, plus one, bounds any
-- estimate (the sketch's value of a bin is within 1% of the values in it).
UPDATE step_rollups SET p95_ceiling_ms = 2 * max_duration_ms + 1;
ALTER TABLE step_rollups DROP COLUMN max_duration_ms;

-- The first pass of a ranking reads only keys and ceilings: with them in the index (which
-- replaces the one on the bucket alone, its prefix) it never touches the rows' sketches.
DROP INDEX step_rollups_by_bucket;
CREATE INDEX step_rollups_by_bucket ON step_rollups
    (workspace_id, grain, bucket_start, workflow_id, node_id, node_type, p95_ceiling_ms);

-- Each workflow's workspace and the span of its runs, kept by the roller: what
-- `Workflow.stats` needs to authorize a caller and to bound "all time", without reading a
-- workflow's facts (and still there once retention has deleted them).
CREATE TABLE workflow_spans (
    workflow_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    first_run_at BIGINT NOT NULL,
    last_run_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, workspace_id)
);
INSERT INTO workflow_spans (workflow_id, workspace_id, first_run_at, last_run_at)
    SELECT workflow_id, workspace_id, MIN(finished_at), MAX(finished_at)
    FROM execution_facts GROUP BY workflow_id, workspace_id;

-- Recoveries added up per quarter-hour and UTC day of their end, kept by the roller as it
-- replaces recoveries (see `store::recoveries`): a range's mean time to recovery reads a
-- few rows instead of every recovery in it.
CREATE TABLE recovery_rollups (
    workspace_id TEXT NOT NULL,
    grain TEXT NOT NULL CHECK (grain IN ('QUARTER', 'DAY')),
    bucket_start BIGINT NOT NULL,
    recoveries BIGINT NOT NULL,
    total_ms BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, grain, bucket_start)
);
INSERT INTO recovery_rollups (workspace_id, grain, bucket_start, recoveries, total_ms)
    SELECT workspace_id, 'QUARTER', recovered_at - recovered_at % 900000, COUNT(*),
        SUM(recovered_at - failed_at)
    FROM recoveries GROUP BY workspace_id, recovered_at - recovered_at % 900000;
INSERT INTO recovery_rollups (workspace_id, grain, bucket_start, recoveries, total_ms)
    SELECT workspace_id, 'DAY', recovered_at - recovered_at % 86400000, COUNT(*),
        SUM(recovered_at - failed_at)
    FROM recoveries GROUP BY workspace_id, recovered_at - recovered_at % 86400000;

-- Activity per UTC day besides per quarter-hour: the active people of a month are the
-- distinct ones of its whole days and of the quarter-hours at its edges.
CREATE TABLE activity_days (
    workspace_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('STARTED', 'EDITED', 'PUBLISHED')),
    PRIMARY KEY (workspace_id, day, user_id, kind)
);
INSERT INTO activity_days (workspace_id, day, user_id, kind)
    SELECT DISTINCT workspace_id, bucket_start - bucket_start % 86400000, user_id, kind
    FROM activity;
