-- Invitations to a workspace. The token is shown once to the inviter (to send to the
-- invitee); only its SHA-256 is kept. It can be accepted once, by a signed-in user whose
-- e-mail is the invited one, before it expires.
CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('OWNER', 'ADMIN', 'EDITOR', 'VIEWER')),
    token_hash TEXT NOT NULL UNIQUE,
    invited_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    accepted_at BIGINT,
    accepted_by TEXT,
    revoked_at BIGINT
);
CREATE INDEX invitations_by_workspace ON invitations (workspace_id, created_at);

-- The security audit log: sign-ins and their failures, lockouts, membership and key
-- changes. `user_id` is whom the event is about (NULL for a failure on an unknown
-- e-mail), `actor_id` who caused it, `workspace_id` the workspace it changed (NULL for
-- account events, which a workspace's admins see for its current members).
CREATE TABLE security_events (
    id TEXT PRIMARY KEY,
    occurred_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT,
    actor_id TEXT,
    workspace_id TEXT,
    ip TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX security_events_by_workspace ON security_events (workspace_id, id);
CREATE INDEX security_events_by_user ON security_events (user_id, id);
