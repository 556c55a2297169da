-- Channels, rules, templates, preferences, deliveries and digests (issue #17).

-- A workspace's channels. `settings` is JSON shown to its admins; `secrets` is sealed
-- with the key ring (context `notification-channel:<workspace>/<id>`) and never returned.
CREATE TABLE channels (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('EMAIL', 'WEBHOOK', 'SMS')),
    settings TEXT NOT NULL,
    secrets TEXT NOT NULL,
    secrets_set TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);

-- A workspace's rules; list columns are JSON arrays, flags 0 or 1.
CREATE TABLE rules (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    events TEXT NOT NULL,
    workflow_ids TEXT NOT NULL,
    member_ids TEXT NOT NULL,
    roles TEXT NOT NULL,
    channel_ids TEXT NOT NULL,
    in_app BIGINT NOT NULL,
    digest_window_secs BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX rules_by_workspace ON rules (workspace_id, id);

-- A workspace's overrides of the built-in templates.
CREATE TABLE templates (
    workspace_id TEXT NOT NULL,
    event_kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    html TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, event_kind, channel)
);

-- A person's preferences (JSON), the same in every workspace.
CREATE TABLE preferences (
    user_id TEXT PRIMARY KEY,
    preferences TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One message to one destination through one channel. `key` is
-- `<source>:<recipient or ->:<channel>`: an event consumed twice makes one row.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    notification_id TEXT,
    channel TEXT NOT NULL CHECK (channel IN ('EMAIL', 'WEBHOOK', 'SMS')),
    channel_id TEXT NOT NULL,
    recipient_id TEXT,
    destination TEXT NOT NULL,
    event_kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    html TEXT,
    data TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'SENT', 'FAILED', 'SUPPRESSED', 'BATCHED')),
    attempts BIGINT NOT NULL,
    last_error TEXT,
    delivery_key TEXT NOT NULL UNIQUE,
    digest_id TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX deliveries_by_workspace ON deliveries (workspace_id, id);
CREATE INDEX deliveries_by_notification ON deliveries (notification_id);
CREATE INDEX deliveries_pending ON deliveries (status, id);

-- Each attempt of a delivery: when, and what the provider answered.
CREATE TABLE delivery_attempts (
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    ok BIGINT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- A digest gathers a rule's deliveries to one destination over a window; when the
-- window closes, one delivery (`delivery_id`) sends them as one message.
CREATE TABLE digests (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    destination_key TEXT NOT NULL,
    closes_at BIGINT NOT NULL,
    delivery_id TEXT
);
-- At most one open digest per rule and destination.
CREATE UNIQUE INDEX digests_open ON digests (rule_id, destination_key) WHERE delivery_id IS NULL;
