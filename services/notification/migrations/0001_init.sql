-- Notifications to users. `source_event_id` names the fact that caused a
-- notification (e.g. `execution:<id>`), so consuming it twice stores one row;
-- notifications sent directly (gRPC) have none.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('IN_APP', 'EMAIL', 'WEBHOOK', 'SMS')),
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'SENT', 'FAILED', 'READ')),
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    read_at BIGINT,
    source_event_id TEXT UNIQUE
);
-- A user's inbox, newest first (ids are UUIDv7, so id order is time order).
CREATE INDEX notifications_by_recipient ON notifications (recipient_id, id);
CREATE INDEX notifications_unread ON notifications (recipient_id, id) WHERE read_at IS NULL;

CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    trace TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    published_at BIGINT
);
CREATE INDEX outbox_pending ON outbox (occurred_at, id) WHERE published_at IS NULL;
