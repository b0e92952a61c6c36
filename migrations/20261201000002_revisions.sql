-- Records change: a discover job remembers which version of its record it indexed (the type
-- index entry's `timestamp`, ms since the epoch), so a cycle enqueues a new discover when the
-- index shows a newer one, and nothing for an unchanged record. NULL: unknown (a hand-enqueued
-- job, or an index entry without a timestamp).
ALTER TABLE jobs ADD COLUMN revision INTEGER;
