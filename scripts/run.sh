#!/usr/bin/env bash
# Installs what is missing, builds Parley in build/ (Release), and starts
# parleyd in the foreground on the embedded default: LMDB under ./data,
# listening on 127.0.0.1:7070. Arguments are passed to parleyd, e.g.
#   scripts/run.sh --listen 127.0.0.1:8080 --data /var/lib/parley
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
exec build/actors/parleyd --config config/parley.conf "$@"
