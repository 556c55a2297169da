-- Files as a product: both content types, a searchable name, the workflow an
-- artifact came from (for retention), blob reference counts (so deleting a file
-- never removes a blob an identical upload just claimed), per-workspace usage (the
-- quota's running total) and per-workspace retention policies.
ALTER TABLE files ADD COLUMN declared_content_type TEXT NOT NULL DEFAULT '';
ALTER TABLE files ADD COLUMN sniffed_content_type TEXT;
ALTER TABLE files ADD COLUMN search_name TEXT NOT NULL DEFAULT '';
ALTER TABLE files ADD COLUMN workflow_id TEXT;
UPDATE files SET declared_content_type = content_type, search_name = LOWER(name);
CREATE INDEX files_by_workflow ON files (workflow_id, id) WHERE workflow_id IS NOT NULL;

-- One row per stored blob; `refs` counts the files whose content it is. A row's
-- lock (the transaction that changes `refs`) is held while its object is written or
-- deleted.
CREATE TABLE blobs (
    blob_key TEXT PRIMARY KEY,
    refs BIGINT NOT NULL,
    size BIGINT NOT NULL
);
INSERT INTO blobs (blob_key, refs, size)
    SELECT blob_key, COUNT(*), MAX(size) FROM files GROUP BY blob_key;

CREATE TABLE workspace_usage (
    workspace_id TEXT PRIMARY KEY,
    bytes BIGINT NOT NULL,
    files BIGINT NOT NULL
);
INSERT INTO workspace_usage (workspace_id, bytes, files)
    SELECT workspace_id, SUM(size), COUNT(*) FROM files GROUP BY workspace_id;

-- How long a workspace keeps workflow artifacts (files with an execution):
-- `keep_days` after creation and/or the newest `keep_last` per workflow. NULL keeps.
CREATE TABLE retention_policies (
    workspace_id TEXT PRIMARY KEY,
    keep_days BIGINT,
    keep_last BIGINT,
    updated_at BIGINT NOT NULL
);

-- One row per run of the cleanup job's period (`storage.cleanup_interval_secs`): the
-- replica that inserts it runs that period's cleanup, so it runs once however many
-- replicas there are.
CREATE TABLE cleanup_runs (
    period BIGINT PRIMARY KEY,
    replica TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    deleted BIGINT
);
