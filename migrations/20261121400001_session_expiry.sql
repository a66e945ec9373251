-- Session lifetime and idle limits, per role with per-user overrides like the other
-- limits (null: the server's configured default), and when a session was warned that it
-- is about to be stopped (so the warning is given once).
alter table quotas
    add column lifetime_minutes integer check (lifetime_minutes > 0),
    add column idle_minutes     integer check (idle_minutes > 0);

alter table sessions
    add column warned_at timestamptz;
