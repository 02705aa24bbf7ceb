-- Learners' disposable clusters (server/src/clusters). Portable SQL (SQLite and PostgreSQL);
-- times are unix milliseconds, booleans BIGINT 0/1.
-- state: requested, creating (with phase), ready, expiring, deleted, failed (with failure_reason).
-- A warm-pool cluster has pooled = 1 and no owner until a learner's Start claims it.
CREATE TABLE clusters (
    id TEXT PRIMARY KEY,
    owner_id TEXT,
    lab_id TEXT NOT NULL,
    session_id TEXT,
    image TEXT NOT NULL,
    state TEXT NOT NULL,
    phase TEXT,
    failure_reason TEXT,
    api_port BIGINT,
    pooled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_active_at BIGINT NOT NULL
);

CREATE INDEX clusters_by_state ON clusters (state);
CREATE INDEX clusters_by_owner ON clusters (owner_id, lab_id);
CREATE INDEX clusters_by_pool ON clusters (pooled, lab_id, state);
