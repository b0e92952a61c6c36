-- Every statement a cycle, a job, the CLI or an endpoint runs is an index lookup or a bounded
-- range, whatever the ledger's size (issue: "fast at any size").

-- Counts by kind and state, kept by triggers in the same transaction as every state change, so
-- `stats`, `/metrics` and `job_summary` read a handful of rows instead of counting every job.
CREATE TABLE job_counts (
    kind  TEXT    NOT NULL,
    state TEXT    NOT NULL,
    jobs  INTEGER NOT NULL,
    PRIMARY KEY (kind, state)
) WITHOUT ROWID;

INSERT INTO job_counts (kind, state, jobs)
SELECT kind, state, count(*) FROM jobs GROUP BY kind, state;

CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs
BEGIN
    INSERT INTO job_counts (kind, state, jobs) VALUES (NEW.kind, NEW.state, 1)
    ON CONFLICT (kind, state) DO UPDATE SET jobs = jobs + 1;
END;

CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs
BEGIN
    UPDATE job_counts SET jobs = jobs - 1 WHERE kind = OLD.kind AND state = OLD.state;
END;

CREATE TRIGGER job_counts_update AFTER UPDATE OF state ON jobs WHEN OLD.state <> NEW.state
BEGIN
    UPDATE job_counts SET jobs = jobs - 1 WHERE kind = OLD.kind AND state = OLD.state;
    INSERT INTO job_counts (kind, state, jobs) VALUES (NEW.kind, NEW.state, 1)
    ON CONFLICT (kind, state) DO UPDATE SET jobs = jobs + 1;
END;

-- Jobs waiting to run, by when: the earliest run_at (the pool's sleep), the oldest runnable
-- job (stats), "what retries next" — without walking the jobs scheduled later.
CREATE INDEX jobs_waiting ON jobs (run_at) WHERE state IN ('pending', 'retrying');

-- Parked jobs by state, newest first (`jobs --state dead`, `dead_jobs`, `requeue --state dead`).
-- Partial: kept only when a job enters or leaves dead or cancelled, not on every transition
-- (an index on every state cost a fifth of the batched lease+complete throughput). Listings of
-- the other states use `jobs_waiting`, `jobs_running_by_expiry`, or the newest ids (done jobs).
CREATE INDEX jobs_parked ON jobs (state, id) WHERE state IN ('dead', 'cancelled');

-- Attempts by when they ended: throughput per hour over a window (README queries, the
-- dashboard). Failures keep their own smaller index (`job_attempts_failures`).
CREATE INDEX job_attempts_by_finish ON job_attempts (finished_at);

-- Counts from job_counts; the age of the oldest runnable job from jobs_waiting.
DROP VIEW job_summary;
CREATE VIEW job_summary AS
SELECT c.kind,
       c.state,
       c.jobs,
       CASE WHEN c.state IN ('pending', 'retrying') THEN (
           SELECT CAST(round((julianday('now') - julianday(min(j.run_at))) * 86400) AS INTEGER)
           FROM jobs AS j INDEXED BY jobs_waiting
           WHERE j.state IN ('pending', 'retrying') AND j.state = c.state AND j.kind = c.kind
             AND j.run_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
       ) END AS oldest_runnable_age_s
FROM job_counts AS c
WHERE c.jobs > 0;
