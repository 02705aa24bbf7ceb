-- The access proxy per tenant (issue 12, lab 6). Portable SQL (SQLite and PostgreSQL).
--
-- A tenant is one namespace of proxy state: roles, who holds them, clusters, second factors,
-- certificates, revocations, audit events and recorded sessions. The site's own proxy is the
-- tenant '' (every row written before this migration); each learner doing lab 6 gets a tenant
-- of their own, which they administer, so nothing they do reaches the site or another learner.
-- Every row carries its tenant and every query names it (server/src/proxy/tenant.rs).

-- Tenants other than the site: one per learner who started lab 6. The owner signs in to it with
-- their hardlab account (password and second factor of the site); the users they invite are
-- proxy_tenant_users.
CREATE TABLE proxy_tenants (
    name TEXT PRIMARY KEY,
    owner_user_id TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX proxy_tenants_owner ON proxy_tenants (owner_user_id);

-- Simulated users a tenant's owner invites (lab 6's bob): a password (argon2id) of their own.
CREATE TABLE proxy_tenant_users (
    tenant TEXT NOT NULL,
    user_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, user_name)
);

CREATE TABLE proxy_roles_t (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
INSERT INTO proxy_roles_t (tenant, name, spec_json, updated_at)
    SELECT '', name, spec_json, updated_at FROM proxy_roles;
DROP TABLE proxy_roles;
ALTER TABLE proxy_roles_t RENAME TO proxy_roles;

CREATE TABLE proxy_user_roles_t (
    tenant TEXT NOT NULL,
    user_name TEXT NOT NULL,
    role_name TEXT NOT NULL,
    PRIMARY KEY (tenant, user_name, role_name)
);
INSERT INTO proxy_user_roles_t (tenant, user_name, role_name)
    SELECT '', user_name, role_name FROM proxy_user_roles;
DROP TABLE proxy_user_roles;
ALTER TABLE proxy_user_roles_t RENAME TO proxy_user_roles;

CREATE TABLE proxy_clusters_t (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    labels_json TEXT NOT NULL,
    kubeconfig TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
INSERT INTO proxy_clusters_t (tenant, name, labels_json, kubeconfig, updated_at)
    SELECT '', name, labels_json, kubeconfig, updated_at FROM proxy_clusters;
DROP TABLE proxy_clusters;
ALTER TABLE proxy_clusters_t RENAME TO proxy_clusters;

CREATE TABLE proxy_totp_t (
    tenant TEXT NOT NULL,
    user_name TEXT NOT NULL,
    secret TEXT NOT NULL,
    confirmed BIGINT NOT NULL,
    last_step BIGINT,
    PRIMARY KEY (tenant, user_name)
);
INSERT INTO proxy_totp_t (tenant, user_name, secret, confirmed, last_step)
    SELECT '', user_name, secret, confirmed, last_step FROM proxy_totp;
DROP TABLE proxy_totp;
ALTER TABLE proxy_totp_t RENAME TO proxy_totp;

CREATE TABLE proxy_code_failures_t (
    tenant TEXT NOT NULL,
    user_name TEXT NOT NULL,
    failures BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL,
    PRIMARY KEY (tenant, user_name)
);
INSERT INTO proxy_code_failures_t (tenant, user_name, failures, last_failure_at, blocked_until)
    SELECT '', user_name, failures, last_failure_at, blocked_until FROM proxy_code_failures;
DROP TABLE proxy_code_failures;
ALTER TABLE proxy_code_failures_t RENAME TO proxy_code_failures;

CREATE TABLE proxy_user_revocations_t (
    tenant TEXT NOT NULL,
    user_name TEXT NOT NULL,
    revoked_before BIGINT NOT NULL,
    PRIMARY KEY (tenant, user_name)
);
INSERT INTO proxy_user_revocations_t (tenant, user_name, revoked_before)
    SELECT '', user_name, revoked_before FROM proxy_user_revocations;
DROP TABLE proxy_user_revocations;
ALTER TABLE proxy_user_revocations_t RENAME TO proxy_user_revocations;

-- A certificate belongs to a tenant: the proxy takes the tenant from this record, never from
-- the certificate. api_token_hash: SHA-256 of the token `hardlab login` gets with the
-- certificate, for the tenant's API from the CLI (same life and revocation as the certificate).
ALTER TABLE proxy_certificates ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE proxy_certificates ADD COLUMN api_token_hash TEXT;
CREATE INDEX proxy_certificates_token ON proxy_certificates (api_token_hash);

ALTER TABLE proxy_audit ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
CREATE INDEX proxy_audit_tenant ON proxy_audit (tenant, seq);

ALTER TABLE proxy_sessions ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
