-- The database at facility scale (100,000 proposals, 1,000,000 sessions): indexes for
-- what the plans of the most used routes showed (tools/bench/facility.sql fills such a
-- database).

-- Searching proposals (`ilike '%...%'` on the identifier, the title or the beamline):
-- trigram indexes, one per column, which the planner ORs together.
create extension if not exists pg_trgm;
create index proposals_identifier_trgm on proposals using gin (identifier gin_trgm_ops);
create index proposals_title_trgm on proposals using gin (title gin_trgm_ops);
create index proposals_beamline_trgm on proposals using gin (beamline gin_trgm_ops);

-- A scientist sees the proposals on their beamlines and those with an experiment on them
-- (read from the indexes alone); the admin's and the staff's session lists filter by an
-- experiment's beamline.
drop index proposals_beamline;
create index proposals_beamline on proposals (beamline, id);
create index experiments_beamline on experiments (beamline, proposal_id);

-- Lists of sessions newest first (the admin's, a beamline's, `all=true`) walk this index
-- and stop at the page, in the lists' own order (`created_at desc, id`).
create index sessions_created on sessions (created_at desc, id);
-- One person's sessions: the admin's `user` filter, the GPU-hours of a quota check.
create index sessions_owner on sessions (owner_id, created_at desc);
-- Usage over a period: the sessions still running, or ended after its start.
create index sessions_stopped on sessions (stopped_at);
