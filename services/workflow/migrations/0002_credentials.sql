-- Workspace credentials for nodes (HTTP auth, SMTP, generic secrets). The value is sealed
-- with the fleet's secret key ring, bound to the credential's id; it is written, never read
-- back through the API. Nodes refer to a credential by id.
CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('HTTP_BASIC', 'HTTP_BEARER', 'HTTP_HEADER', 'SMTP', 'SECRET')),
    sealed_value TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);
