-- Instructor-led workshops (server/src/workshops). Portable SQL (SQLite and PostgreSQL); times
-- are unix milliseconds.
--
-- labs: a JSON array of lab IDs in the order the workshop takes them. join_code: random, from
-- an alphabet without look-alike characters (server/src/workshops/mod.rs); it is shown to the
-- workshop's instructors, so it is kept as it is, and it is what /join/<code> looks up.
-- ended_at: set when an instructor or `hardlab workshop end` ends it (ends_at is the plan).
CREATE TABLE workshops (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    labs TEXT NOT NULL,
    capacity BIGINT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    join_code TEXT NOT NULL UNIQUE,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    ended_at BIGINT
);

-- Who runs a workshop: the instructor role reaches only the workshops listed here for them.
CREATE TABLE workshop_instructors (
    workshop_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (workshop_id, user_id)
);
CREATE INDEX workshop_instructors_by_user ON workshop_instructors (user_id);

CREATE TABLE workshop_learners (
    workshop_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (workshop_id, user_id)
);
CREATE INDEX workshop_learners_by_user ON workshop_learners (user_id);

-- Every instructor action on a workshop (create, extend, reset, broadcast, end, ...).
-- actor_id is NULL for the admin CLI; target_user_id names the learner an action was for.
CREATE TABLE workshop_audit (
    id TEXT PRIMARY KEY,
    workshop_id TEXT NOT NULL,
    actor_id TEXT,
    action TEXT NOT NULL,
    target_user_id TEXT,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX workshop_audit_by_workshop ON workshop_audit (workshop_id, at);
