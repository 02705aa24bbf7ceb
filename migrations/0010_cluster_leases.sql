-- Several servers on one database (docs/architecture.md, "More than one server"): each live
-- cluster row is leased by the server that drives it (creation, watching its node), renewed while
-- that server lives; a row whose lease ran out is taken over by another server.
ALTER TABLE clusters ADD COLUMN lease_holder TEXT;
ALTER TABLE clusters ADD COLUMN lease_expires_at BIGINT NOT NULL DEFAULT 0;

-- Work that one server at a time does (reaping, taking over expired leases, refilling the pool),
-- held by whoever renewed it last.
CREATE TABLE leader_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
