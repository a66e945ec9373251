#!/bin/sh
# Starts Xvnc on :1 (port 5901) with the session's password, then Xfce; exits when Xfce
# does, which ends the session's pod.
set -eu
: "${VNC_PASSWORD:?VNC_PASSWORD is not set}"
mkdir -p "$HOME/.vnc"
printf '%s\n' "$VNC_PASSWORD" | vncpasswd -f > "$HOME/.vnc/passwd"
chmod 600 "$HOME/.vnc/passwd"
unset VNC_PASSWORD
Xvnc :1 -rfbport 5901 -rfbauth "$HOME/.vnc/passwd" -SecurityTypes VncAuth \
  -geometry "${DAAS_GEOMETRY:-1600x900}" -depth 24 -AlwaysShared &
export DISPLAY=:1
for _ in $(seq 50); do [ -e /tmp/.X11-unix/X1 ] && break; sleep 0.1; done
exec dbus-launch --exit-with-session startxfce4
