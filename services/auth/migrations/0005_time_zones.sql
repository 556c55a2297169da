-- Where a person and a workspace keep their clocks: IANA names such as
-- `Europe/Paris`, `UTC` until set.
ALTER TABLE users ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE workspaces ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
