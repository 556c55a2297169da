-- File metadata. Content lives in the blob store under `blob_key`
-- (`sha256/<hex>`): identical contents share one blob.
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    execution_id TEXT,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX files_by_workspace ON files (workspace_id, id);
CREATE INDEX files_by_execution ON files (execution_id, id) WHERE execution_id IS NOT NULL;
CREATE INDEX files_by_blob ON files (blob_key);

-- Service-wide settings generated on first start (e.g. the URL-signing key),
-- so that no configuration is needed and every replica agrees.
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
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
