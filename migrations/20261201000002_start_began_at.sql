-- When the runtime was asked to start a session (after its wait in the start queue):
-- written before anything of it runs, so a restarted daas knows a start may have left
-- processes to adopt, and the startup timeout counts from it rather than from the request.
alter table sessions add column start_began_at timestamptz;
