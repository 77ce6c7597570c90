#!/usr/bin/env bash
# A bounded soak of the real gateway: mixed traffic (allowed, denied, streamed, broken-off
# streams, authentication failures, model lists) from 16 clients for SECONDS (default 600), the
# bundle rebuilt and hot-reloaded every 60 s, RSS and open file descriptors sampled every 10 s
# and printed with their slope; then the record chain is verified and every answer's decision
# id looked up in the records. Exit 1 on an unrecorded answer, a chain that does not verify, or
# growth (RSS over 1 MiB/min, descriptors over 1/min, after the first minute).
#
#   scripts/soak.sh [SECONDS] [-- extra arguments of scripts/soak.py]
#
# Uses the debug build the test command makes ($CAIRN_BIN to choose another) and its venv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=${CAIRN_VENV:-$CACHE/venv}
secs=${1:-600}
shift || true
[[ "${1:-}" == "--" ]] && shift
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "scripts/soak.sh: no venv at $VENV; run scripts/test.sh once (it makes it)" >&2
  exit 2
fi
if [[ -z "${CAIRN_BIN:-}" ]]; then
  cargo build --quiet --bin cairn
  export CAIRN_BIN="$CARGO_TARGET_DIR/debug/cairn"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CAIRN_REPO="$ROOT" "$VENV/bin/python" scripts/soak.py --seconds "$secs" --workdir "$work" "$@"
