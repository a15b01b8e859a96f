#!/usr/bin/env bash
# One command on a fresh Debian machine with Node 20: install what is missing
# (libfuse2 + fuse from apt, the npm dependencies), then format and mount a
# master and a slave under ./run from the embedded default config, with live
# replication between them on 127.0.0.1, and show a file reaching the slave.
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
ldconfig -p | grep -q 'libfuse.so.2' || need+=(libfuse2)
command -v fusermount >/dev/null 2>&1 || need+=(fuse)
if [ ${#need[@]} -gt 0 ]; then
  echo "quickstart: installing ${need[*]} (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
[ -d node_modules/lmdb ] && [ -d node_modules/fuse-native ] || npm ci --no-audit --no-fund
exec node bin/lessfs-demo.js up "$@"
