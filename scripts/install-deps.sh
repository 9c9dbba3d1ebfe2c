#!/usr/bin/env bash
# Installs the Debian packages Parley needs to build, test and benchmark.
# Idempotent: it asks apt only for what is missing, and runs
# `apt-get update` at most once per call, only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  clang clang-format clang-tidy cppcheck libclang-rt-14-dev
  libuv1-dev libwslay-dev libhttp-parser-dev libmsgpack-dev
  liblmdb-dev libsodium-dev libhiredis-dev libinih-dev libcmocka-dev
  libedit-dev libjansson-dev
  erlang-nox
  redis-server
  nodejs npm
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
    grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# Node.js and npm may come from outside Debian's archive (the machine image
# ships its own); accept any working node >= 18 instead of Debian's package.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do
    case "$p" in nodejs | npm) ;; *) filtered+=("$p") ;; esac
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
