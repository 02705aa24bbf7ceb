-- The learner's lab page (issue 13). Portable SQL (SQLite and PostgreSQL).
--
-- What started an attempt: 'check' (the learner pressed Check), 'auto' (the step page checked in
-- the background; only passes are stored), 'catch-up' (the server ran the earlier steps'
-- solutions and confirmed them). check_attempts.status is now the step's verdict: pass, warn
-- (passed with warnings), fail (not yet), unjudged (could not be judged here), or running;
-- step_progress.state is passed, warned, failed or unjudged (an attempt that could not be judged
-- leaves an earlier verdict in place).
ALTER TABLE check_attempts ADD COLUMN origin TEXT NOT NULL DEFAULT 'check';
