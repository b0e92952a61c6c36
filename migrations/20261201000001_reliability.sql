-- What the daemon learns about the systems around it, kept in the ledger so that every process
-- (the CLI beside the daemon) can show it.

-- Open circuits of the worker pool: a system every job needs (Elasticsearch) failed in a way
-- that is not the job's fault (a wrong password, a cluster refusing connections). Work is paused
-- until a probe succeeds; the row disappears when the circuit closes.
CREATE TABLE circuits (
    system        TEXT PRIMARY KEY,
    reason        TEXT NOT NULL,
    since         TEXT NOT NULL,
    next_probe_at TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- The last successful read of each type index on each peer. A 404 for an index that listed
-- records before is an error of that peer and type (a relay that gave up on a large index),
-- never "no records".
CREATE TABLE index_reads (
    peer        TEXT    NOT NULL,
    record_type TEXT    NOT NULL,
    entries     INTEGER NOT NULL,
    read_at     TEXT    NOT NULL,
    PRIMARY KEY (peer, record_type)
);

-- Deletion-registry entries of relays not in GUNSYNC_DELETION_PEERS: read, ignored, counted.
ALTER TABLE sync_cycles ADD COLUMN deletions_ignored INTEGER NOT NULL DEFAULT 0;
-- /healthz asks when the last cycle finished.
CREATE INDEX sync_cycles_finished ON sync_cycles (finished_at);
