-- Who owns the workflow an execution runs (from its published version), so outcomes of
-- runs nobody started by hand (schedules, webhooks) reach that person. NULL for
-- executions recorded before this column.
ALTER TABLE executions ADD COLUMN workflow_owner_id TEXT;
