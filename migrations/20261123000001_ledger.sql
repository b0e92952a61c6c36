-- The durable job ledger (DESIGN §2). Timestamps are ISO-8601 UTC text with milliseconds and a Z
-- ('2026-11-23T08:00:00.000Z'), so sqlite3 shows them and text comparison orders them.

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    kind             TEXT    NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    key              TEXT    NOT NULL CHECK (length(key) BETWEEN 1 AND 1024),
    payload          TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(payload)),
    state            TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'running', 'retrying', 'done', 'dead', 'cancelled')),
    priority         INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at           TEXT    NOT NULL,
    lease_expires_at TEXT,
    lease_token      TEXT,
    leased_by        TEXT,
    leased_at        TEXT,    -- when the current attempt started (running jobs only)
    last_error       TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    processed_at     TEXT,
    -- a running job always holds a lease; no other state does
    CHECK ((state = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL
                                  AND leased_at IS NOT NULL))
);

-- At most one active job per (kind, key).
CREATE UNIQUE INDEX jobs_one_active_per_key ON jobs (kind, key)
    WHERE state IN ('pending', 'running', 'retrying');
-- The lease query's scan: runnable jobs in lease order.
CREATE INDEX jobs_runnable ON jobs (priority, run_at, id) WHERE state IN ('pending', 'retrying');
-- The reclaimer's scan: leases by expiry.
CREATE INDEX jobs_running_by_expiry ON jobs (lease_expires_at) WHERE state = 'running';
-- History per key (sync decides on it, `jobs --key` lists it). Deliberately no index on `state`
-- (the planner would prefer it to `jobs_runnable` and sort every pending job on each lease) nor
-- on `processed_at` (every finish would pay for it; prune scans by id instead).
CREATE INDEX jobs_by_kind_key ON jobs (kind, key);

-- One row per finished attempt, written in the same transaction that ends it (done, retry,
-- dead, lease_expired, interrupted). The attempt in flight is the job row itself (`leased_at`,
-- `leased_by`, `lease_expires_at`), so leasing writes one row per job, not two.
CREATE TABLE job_attempts (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    started_at  TEXT    NOT NULL,
    finished_at TEXT    NOT NULL,
    outcome     TEXT    NOT NULL
                CHECK (outcome IN ('done', 'retry', 'dead', 'lease_expired', 'interrupted')),
    error       TEXT,
    http_status INTEGER,
    leased_by   TEXT,
    lease_token TEXT
);
CREATE INDEX job_attempts_by_job ON job_attempts (job_id, attempt);
CREATE INDEX job_attempts_failures ON job_attempts (finished_at)
    WHERE outcome IN ('retry', 'dead', 'lease_expired');

-- One row per sync cycle and peer.
CREATE TABLE sync_cycles (
    id                 INTEGER PRIMARY KEY,
    peer               TEXT    NOT NULL,
    started_at         TEXT    NOT NULL,
    finished_at        TEXT,
    deletions_seen     INTEGER NOT NULL DEFAULT 0,
    records_seen       INTEGER NOT NULL DEFAULT 0,
    delete_enqueued    INTEGER NOT NULL DEFAULT 0,
    discover_enqueued  INTEGER NOT NULL DEFAULT 0,
    rejected           INTEGER NOT NULL DEFAULT 0,
    error              TEXT
);
CREATE INDEX sync_cycles_started ON sync_cycles (started_at);

-- Counts by kind and state, with the age in seconds of the oldest job that is runnable now.
CREATE VIEW job_summary AS
SELECT kind,
       state,
       count(*) AS jobs,
       CAST(round((julianday('now') - julianday(min(
           CASE WHEN state IN ('pending', 'retrying')
                 AND run_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now') THEN run_at END
       ))) * 86400) AS INTEGER) AS oldest_runnable_age_s
FROM jobs
GROUP BY kind, state;

-- Parked jobs and why.
CREATE VIEW dead_jobs AS
SELECT id, kind, key, attempts, max_attempts, last_error, processed_at AS died_at, created_at
FROM jobs
WHERE state = 'dead';

-- Failed attempts, newest first.
CREATE VIEW recent_failures AS
SELECT a.job_id, j.kind, j.key, a.attempt, a.outcome, a.http_status, a.error,
       a.started_at, a.finished_at
FROM job_attempts AS a
JOIN jobs AS j ON j.id = a.job_id
WHERE a.outcome IN ('retry', 'dead', 'lease_expired')
ORDER BY a.finished_at DESC;
