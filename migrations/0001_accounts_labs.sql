-- Accounts, sessions, sign-in throttling, lab progress and static clusters (server/src/{web,db}).
-- Portable SQL (SQLite and PostgreSQL); times are unix milliseconds, booleans BIGINT 0/1.

-- role: learner, instructor or admin. username is stored lowercased.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The cookie carries a random token; only its SHA-256 is stored, so a copy of the database
-- does not hand out live sessions. Each session has its own CSRF token.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Wrong passwords per account and per client address, in the database so every instance
-- behind a load balancer sees the same count.
CREATE TABLE sign_in_failures (
    throttle_key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL
);

-- One-time token that lets the first visitor create the first admin; only its hash is kept.
CREATE TABLE setup_tokens (
    token_hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

-- Every press of Check. status: running, pass, fail (results_json holds the grader's results).
CREATE TABLE check_attempts (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    lab_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    status TEXT NOT NULL,
    results_json TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX check_attempts_by_step ON check_attempts (user_id, lab_id, step_id, started_at);

-- The latest verdict per step, so the lab page needs one small query. state: passed, failed.
-- failed_attempts decides how many hints are shown.
CREATE TABLE step_progress (
    user_id TEXT NOT NULL,
    lab_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    state TEXT NOT NULL,
    failed_attempts BIGINT NOT NULL,
    last_attempt_id TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, lab_id, step_id)
);

-- A learner's own cluster registered by kubeconfig (the "static" provider). The kubeconfig and
-- the etcd client key are sealed with AES-256-GCM under the server key, never stored in clear.
CREATE TABLE static_clusters (
    owner_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kubeconfig_sealed TEXT NOT NULL,
    node_spec TEXT,
    etcd_endpoint TEXT,
    etcd_ca_pem TEXT,
    etcd_cert_pem TEXT,
    etcd_key_sealed TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
