-- Operator views that stay index lookups on a large ledger (`gunsync bench scale`).

-- The oldest runnable job of each kind and state, one seek each: `jobs_waiting` (by run_at
-- alone) made job_summary walk every runnable job of the other kinds first (33 ms at 1M jobs
-- with 20 000 runnable discovers and 50 000 deletions retrying later).
CREATE INDEX jobs_waiting_by_kind ON jobs (kind, state, run_at)
    WHERE state IN ('pending', 'retrying');

DROP VIEW job_summary;
CREATE VIEW job_summary AS
SELECT c.kind,
       c.state,
       c.jobs,
       CASE WHEN c.state IN ('pending', 'retrying') THEN (
           SELECT CAST(round((julianday('now') - julianday(min(j.run_at))) * 86400) AS INTEGER)
           FROM jobs AS j INDEXED BY jobs_waiting_by_kind
           WHERE j.state IN ('pending', 'retrying') AND j.kind = c.kind AND j.state = c.state
             AND j.run_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
       ) END AS oldest_runnable_age_s
FROM job_counts AS c
WHERE c.jobs > 0;

-- Dead jobs through `jobs_parked`, now with their payload (a refused deletion keeps its reason
-- there): SQLite uses a partial index only when the query repeats its
-- condition, and `state = 'dead'` alone does not (a scan of every job: 297 ms at 1M).
DROP VIEW dead_jobs;
CREATE VIEW dead_jobs AS
SELECT id, kind, key, attempts, max_attempts, last_error, processed_at AS died_at, created_at,
       payload
FROM jobs INDEXED BY jobs_parked
WHERE state IN ('dead', 'cancelled') AND state = 'dead';

-- Waiting jobs newest first (`jobs --state pending|retrying`): without it the listing sorted
-- every waiting job (96 ms with 70 000 waiting in a 1M-job ledger).
CREATE INDEX jobs_waiting_by_id ON jobs (state, id) WHERE state IN ('pending', 'retrying');
