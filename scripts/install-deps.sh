#!/usr/bin/env bash
# Installs what daas needs and this machine lacks. Idempotent: a second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
have_pg() {
  command -v pg_ctl >/dev/null && command -v initdb >/dev/null && return 0
  compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null
}
have_pg || apt_packages+=(postgresql)
command -v openssl >/dev/null || apt_packages+=(openssl)
# README's API examples read JSON with jq.
command -v jq >/dev/null || apt_packages+=(jq)
# Browser end-to-end tests drive Debian's chromium.
[ -x /usr/bin/chromium ] || apt_packages+=(chromium)
command -v npm >/dev/null || apt_packages+=(nodejs npm)
# The local runtime: the sandbox, the desktop (VNC server, Xfce's window manager, panel,
# desktop, terminal and file manager on a D-Bus session bus; the tests read its windows
# with xwininfo) and the Python that the venv below is made from.
command -v bwrap >/dev/null || apt_packages+=(bubblewrap)
command -v Xvnc >/dev/null || apt_packages+=(tigervnc-standalone-server)
# Xfce's parts (the panel launches the app finder), then the analysis tools a light
# source's users know: silx (HDF5 viewer, plots), PyMca (XRF), pyFAI (azimuthal
# integration), ViTables (HDF5 tables), ImageJ.
for need in xfwm4:xfwm4 xfce4-panel:xfce4-panel xfdesktop:xfdesktop4 xfce4-terminal:xfce4-terminal \
  thunar:thunar xfce4-appfinder:xfce4-appfinder dbus-run-session:dbus-bin xwininfo:x11-utils \
  silx:silx pymca:pymca pyFAI-calib2:pyfai vitables:vitables imagej:imagej; do
  command -v "${need%%:*}" >/dev/null || apt_packages+=("${need#*:}")
done
# X cookies for the desktops' displays; socat relays a session's socket to an image that
# listens on a TCP port inside its network namespace.
command -v xauth >/dev/null || apt_packages+=(xauth)
command -v socat >/dev/null || apt_packages+=(socat)
# The Slurm runtime's commands (sbatch, squeue, scancel, scontrol) and the daemons of the
# one-node cluster its tests start (slurmctld, slurmd, munge); the packages' own services
# are not used (the tests start private daemons).
for need in sbatch:slurm-client slurmctld:slurmctld slurmd:slurmd munged:munge; do
  command -v "${need%%:*}" >/dev/null || [ -x "/usr/sbin/${need%%:*}" ] || apt_packages+=("${need#*:}")
done
command -v python3 >/dev/null || apt_packages+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_packages+=(python3-venv)

if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "installing: ${apt_packages[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
fi

# One virtualenv for every Python tool daas uses, from the pinned requirements.txt and the
# file it includes (tools/recon/requirements.txt); reinstalled only when their text changes.
venv=.daas/venv
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv"
  python3 -m venv "$venv"
fi
requirements="$(cat requirements.txt tools/recon/requirements.txt)"
if [ "$requirements" != "$(cat "$venv/.requirements.txt" 2>/dev/null)" ]; then
  echo "installing the Python requirements into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
  # Compile algotom's numba back-projector once, into the venv's cache: sessions see the
  # venv read-only, so a job would otherwise compile it anew each time (seconds to a
  # minute on a loaded machine).
  "$venv/bin/python" -c "import numpy as np, algotom.rec.reconstruction as r; r.fbp_reconstruction(np.ones((8, 16), np.float32), 8.0, gpu=False)"
  printf '%s\n' "$requirements" > "$venv/.requirements.txt"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# npm packages: the browser code daas serves (frontend/), the end-to-end test tools
# (tests/e2e/) and configurable-http-proxy, which the benchmarks compare with (tests/bench/),
# exactly as their lock files say; reinstalled only when a lock file changed.
root="$(cd "$(dirname "$0")/.." && pwd)"
for dir in frontend tests/e2e tests/bench; do
  if [ ! -f "$root/$dir/node_modules/.package-lock.json" ] || [ "$root/$dir/package-lock.json" -nt "$root/$dir/node_modules/.package-lock.json" ]; then
    echo "npm ci in $dir"
    (cd "$root/$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
