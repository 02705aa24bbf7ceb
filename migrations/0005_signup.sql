-- Invitation links for `signup: invite` (server/src/web/signup.rs). The link carries a random
-- token; only its SHA-256 is stored, so a copy of the database hands out no sign-ups. A link
-- works until `expires_at` for at most `max_uses` accounts; `uses` counts them atomically.
-- created_by is the staff member's user ID, or NULL for `hardlab admin invite`.
CREATE TABLE signup_invites (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    max_uses BIGINT NOT NULL,
    uses BIGINT NOT NULL
);

-- Sign-in throttling now counts per account and per (account, client address); the counters
-- per address alone are no longer read.
DELETE FROM sign_in_failures WHERE throttle_key LIKE 'address:%';
