-- The demo desktop becomes the Xfce desktop its name promises (window manager, panel,
-- desktop, a file manager on /data, a terminal, on one D-Bus session bus; the panel's
-- layout, with a dock of the analysis tools, in tools/desktop) instead of an
-- xterm on Openbox. Only the command daas gave it is changed; one an admin wrote is left.
update images
set local_command = replace(
    local_command::text,
    'openbox & xterm -geometry 120x36+40+40 & wait $xvnc',
    'XDG_CONFIG_DIRS={tools}/desktop:/etc/xdg XFCE_PANEL_MIGRATE_DEFAULT=1 dbus-run-session -- sh -c ''xfwm4 & xfce4-panel & xfdesktop & thunar /data & xfce4-terminal --geometry 80x24+40+40 & wait'' & wait $xvnc'
)::jsonb
where local_command::text like '%Xvnc%-rfbunixpath%openbox & xterm -geometry 120x36+40+40 & wait $xvnc%';
