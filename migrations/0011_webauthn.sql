-- Security keys and passkeys as a second factor of a hardlab account (issue 12). Portable SQL
-- (SQLite and PostgreSQL).
--
-- A credential belongs to a site account (like its authenticator app, it is the account's second
-- factor in every tenant the account owns). Only public data is kept: webauthn-rs's credential
-- record (the public key, the signature counter, the backup flags), checked and updated at every
-- use so a cloned key (a counter going back) or a changed backup state is refused.
CREATE TABLE proxy_webauthn_keys (
    -- base64url of the credential's id; one account per credential.
    credential_id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    -- What the owner called it ("yubikey", "laptop").
    name TEXT NOT NULL,
    credential_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX proxy_webauthn_keys_user ON proxy_webauthn_keys (user_name);

-- A ceremony under way: the challenge the server sent and expects back. Bound to the browser
-- (`binding`: the SHA-256 of its session token, or of the sign-in cookie set once the password
-- was right), to one user and one purpose; it lives minutes and is deleted when it is used, so a
-- response can be replayed nowhere.
CREATE TABLE proxy_webauthn_ceremonies (
    binding TEXT NOT NULL,
    purpose TEXT NOT NULL,
    user_name TEXT NOT NULL,
    -- The credential's name, for a registration.
    name TEXT NOT NULL,
    state_json TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (binding, purpose)
);
