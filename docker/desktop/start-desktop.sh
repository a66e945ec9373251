#!/bin/sh
# Starts Xvnc (display :1, port 5901) with the session's password, then Xfce; exits when
# Xfce does, which ends the session's pod.
set -eu
: "${VNC_PASSWORD:?VNC_PASSWORD is not set}"
display="${DAAS_DISPLAY:-1}"
port="${DAAS_VNC_PORT:-5901}"
mkdir -p "$HOME/.vnc"
printf '%s\n' "$VNC_PASSWORD" | vncpasswd -f > "$HOME/.vnc/passwd"
chmod 600 "$HOME/.vnc/passwd"
unset VNC_PASSWORD
Xvnc ":$display" -rfbport "$port" -rfbauth "$HOME/.vnc/passwd" -SecurityTypes VncAuth \
  -geometry "${DAAS_GEOMETRY:-1600x900}" -depth 24 -AlwaysShared &
export DISPLAY=":$display"
for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X$display" ] && break; sleep 0.1; done
exec dbus-launch --exit-with-session startxfce4
