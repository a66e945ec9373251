#!/usr/bin/env bash
# Installs what daas needs and this machine lacks. Idempotent: a second run does nothing.
set -euo pipefail

apt_packages=()
have_pg() {
  command -v pg_ctl >/dev/null && command -v initdb >/dev/null && return 0
  compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null
}
have_pg || apt_packages+=(postgresql)

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
