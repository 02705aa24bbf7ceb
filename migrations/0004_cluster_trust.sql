-- The learner's node is hostile (docs/security.md): the server reaches a cluster only with
-- certificates captured when it was created, sealed here with the server key.
ALTER TABLE clusters ADD COLUMN credentials_sealed TEXT;

-- One row: this installation's identity, made at first start. It labels everything the server
-- creates on a Docker engine, so a second installation on the same engine sees none of it.
CREATE TABLE installation (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
