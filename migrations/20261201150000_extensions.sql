-- Users may give their own sessions more time, up to a limit per role with per-user
-- overrides like the other limits (null: the server's configured default; 0: not at all).
-- A session remembers how much its members added, so the limit holds over its whole life.
alter table quotas
    add column extension_minutes integer check (extension_minutes >= 0);

alter table sessions
    add column extended_minutes integer not null default 0 check (extended_minutes >= 0);
