#!/usr/bin/env bash
# Installs the named Debian packages that are missing (none: does nothing, quickly). Shared by the
# scripts that need packages, so a fresh machine gets exactly what each command uses.
set -euo pipefail
missing=()
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
((${#missing[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "install-packages: missing Debian packages (${missing[*]}); run as root or install them" >&2
  exit 1
fi
echo "install-packages: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
