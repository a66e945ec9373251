#!/usr/bin/env bash
# Installs what daas needs and this machine lacks. Idempotent: a second run does nothing.
set -euo pipefail

apt_packages=()
have_pg() {
  command -v pg_ctl >/dev/null && command -v initdb >/dev/null && return 0
  compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null
}
have_pg || apt_packages+=(postgresql)
command -v openssl >/dev/null || apt_packages+=(openssl)
# Browser end-to-end tests drive Debian's chromium.
[ -x /usr/bin/chromium ] || apt_packages+=(chromium)
command -v npm >/dev/null || apt_packages+=(nodejs npm)

if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "installing: ${apt_packages[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# npm packages: the browser code daas serves (frontend/) and the end-to-end test tools
# (tests/e2e/), exactly as their lock files say; reinstalled only when a lock file changed.
root="$(cd "$(dirname "$0")/.." && pwd)"
for dir in frontend tests/e2e; do
  if [ ! -f "$root/$dir/node_modules/.package-lock.json" ] || [ "$root/$dir/package-lock.json" -nt "$root/$dir/node_modules/.package-lock.json" ]; then
    echo "npm ci in $dir"
    (cd "$root/$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

cd "$root"
# Python tools (schema validation, chart rendering) in one virtualenv, from requirements.txt;
# reinstalled only when requirements.txt changes.
venv=.daas/venv
stamp="$venv/.requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing Python tools into $venv"
  if ! python3 -m venv --help >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi
