-- TOTP second factor. The seed is sealed with the fleet's secret key ring (never stored in
-- the clear); `pending_seed` holds an enrolment until its first code confirms it.
-- `last_step` is the newest 30-second step a code was accepted for, so a code cannot be
-- replayed.
CREATE TABLE mfa (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    seed TEXT,
    pending_seed TEXT,
    enabled_at BIGINT,
    last_step BIGINT NOT NULL DEFAULT 0
);

-- One-time recovery codes, stored as SHA-256 hashes.
CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_hash)
);
