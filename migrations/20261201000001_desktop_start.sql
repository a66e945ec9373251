-- The demo desktops (local runtime):
-- - Every connection to Xvnc comes from daas's relay through the session's socket, so
--   TigerVNC's blacklist (failures counted per address) shut every viewer out for 10 s
--   after a burst: it is off.
-- - The window manager and the terminal waited at most 5 s for the X server; on a loaded
--   machine they started before it, died, and left the desktop black: they wait 60 s.
update images
set local_command = replace(local_command::text, '-SecurityTypes VncAuth', '-UseBlacklist=0 -SecurityTypes VncAuth')::jsonb
where local_command::text like '%Xvnc%-rfbunixpath%' and local_command::text not like '%UseBlacklist%';
update images
set local_command = replace(local_command::text, '[ $i -lt 50 ]', '[ $i -lt 600 ]')::jsonb
where local_command::text like '%Xvnc%-rfbunixpath%';
