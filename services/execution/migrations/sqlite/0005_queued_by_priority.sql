-- The steps waiting for a worker, by priority: what `flowfleet_steps_queued` samples
-- every few seconds. Partial, so it holds only the queued steps (few) and costs a
-- transition nothing once its step is claimed.
CREATE INDEX step_runs_queued ON step_runs (priority) WHERE status = 'QUEUED';
