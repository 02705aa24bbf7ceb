-- The access proxy: user CA, roles, clusters, TOTP, issued certificates, hash-chained audit log
-- and exec session recordings. Portable SQL (SQLite and PostgreSQL); times are unix milliseconds.

-- The user CA (one row, id = 1). The clusters never trust it; only the proxy does.
CREATE TABLE proxy_ca (
    id BIGINT PRIMARY KEY,
    cert_pem TEXT NOT NULL,
    key_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A role as JSON with Teleport's field names (kubernetes_labels, kubernetes_groups, ...).
CREATE TABLE proxy_roles (
    name TEXT PRIMARY KEY,
    spec_json TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE proxy_user_roles (
    user_name TEXT NOT NULL,
    role_name TEXT NOT NULL,
    PRIMARY KEY (user_name, role_name)
);

-- A cluster behind the proxy: labels (JSON object) and the kubeconfig of the proxy's own identity.
CREATE TABLE proxy_clusters (
    name TEXT PRIMARY KEY,
    labels_json TEXT NOT NULL,
    kubeconfig TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- TOTP enrolment; last_step stops a code from being used twice.
CREATE TABLE proxy_totp (
    user_name TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    confirmed BIGINT NOT NULL,
    last_step BIGINT
);

CREATE TABLE proxy_certificates (
    serial TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    roles_json TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    not_after BIGINT NOT NULL
);

-- Append-only: each row's hash covers the previous row's hash and this row's event_json.
CREATE TABLE proxy_audit (
    seq BIGINT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    cluster TEXT NOT NULL,
    verb TEXT NOT NULL,
    resource TEXT NOT NULL,
    namespace TEXT NOT NULL,
    response_code BIGINT NOT NULL,
    decision TEXT NOT NULL,
    event_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX proxy_audit_user ON proxy_audit (user_name, seq);
CREATE INDEX proxy_audit_cluster ON proxy_audit (cluster, seq);

-- An upgraded connection (exec, attach, port-forward) recorded as the bytes each way with timings.
CREATE TABLE proxy_sessions (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    cluster TEXT NOT NULL,
    request_path TEXT NOT NULL,
    protocol TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT
);

CREATE TABLE proxy_session_chunks (
    session_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    offset_ms BIGINT NOT NULL,
    direction TEXT NOT NULL,
    data_b64 TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
