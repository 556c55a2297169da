-- Tags, shown from the JSON column and filtered through workflow_tags (kept in step in
-- one transaction); versions remember which version a rollback re-published; and the
-- trigger feed the execution engine follows.
ALTER TABLE workflows ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
-- Stored lowercased for case-insensitive search on both backends.
ALTER TABLE workflows ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
UPDATE workflows SET search_text = LOWER(name || ' ' || description);

CREATE TABLE workflow_tags (
    workflow_id TEXT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (workflow_id, tag)
);
CREATE INDEX workflow_tags_by_tag ON workflow_tags (workspace_id, tag, workflow_id);

ALTER TABLE workflow_versions ADD COLUMN rolled_back_from BIGINT;

-- One row per workflow that ever had triggers: the triggers that are live now ('[]' when
-- none: a draft, an archived or a deleted workflow) and the feed position of the change
-- that set them. Watchers read rows after their cursor, so each sees every workflow's
-- latest state in commit order.
CREATE TABLE workflow_triggers (
    workflow_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    version BIGINT,
    triggers TEXT NOT NULL,
    seq BIGINT NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE INDEX workflow_triggers_by_seq ON workflow_triggers (seq);

-- The feed's head. Writers take the next position with an UPDATE of this one row, which
-- also serialises them, so positions become visible in order (no cursor skips a change
-- that commits late).
CREATE TABLE trigger_feed_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO trigger_feed_head (id, seq) VALUES (1, 0);
