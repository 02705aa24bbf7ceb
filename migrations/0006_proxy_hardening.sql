-- The access proxy hardened (issue 12). Portable SQL (SQLite and PostgreSQL); times are unix ms.
--
-- Secrets at rest need no new columns: proxy_ca.key_pem, proxy_totp.secret and
-- proxy_clusters.kubeconfig now hold values sealed with the server key, bound to their row; the
-- server seals rows still in plaintext when it starts (SQL cannot encrypt).

-- One certificate revoked (its serial), checked on every connection to the proxy.
ALTER TABLE proxy_certificates ADD COLUMN revoked_at BIGINT;
CREATE INDEX proxy_certificates_user ON proxy_certificates (user_name);

-- All of a user's certificates revoked: any issued before `revoked_before` is refused.
CREATE TABLE proxy_user_revocations (
    user_name TEXT PRIMARY KEY,
    revoked_before BIGINT NOT NULL
);

-- Wrong second-factor codes per user: after a few, the user waits (doubling) before trying again.
CREATE TABLE proxy_code_failures (
    user_name TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL
);
