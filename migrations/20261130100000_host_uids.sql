-- Sessions run as an unprivileged host identity of their owner (uid = gid), allocated
-- from the configured range at the user's first launch and kept: files in a home stay
-- its user's across restarts and reconfigurations. The sequence numbers the allocations,
-- so two launches at once never get one uid.
alter table users add column host_uid integer unique check (host_uid >= 1000);
create sequence users_host_uid_seq minvalue 0 start 0;
