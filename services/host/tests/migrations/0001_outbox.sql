-- The outbox every service's migrations create, plus one table to write beside it.
CREATE TABLE notes (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
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
