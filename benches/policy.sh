#!/usr/bin/env bash
# Policy proof benchmark: `cairn policy analyze` and `cairn policy diff --prove` on the default
# bundle and a generated 1,000-policy set, cold and cached, each as a multiple of
# `cairn policy validate` measured in the same run.
#
#   benches/policy.sh                   release build (about 40 minutes the first time)
#   CAIRN_BIN=target/debug/cairn benches/policy.sh      reuse a debug build
#   POLICIES=200 RUNS=1 benches/policy.sh
#
# Uses the test venv's solver (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
VENV=${CAIRN_VENV:-$CACHE/venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
if [[ -z "${CAIRN_BIN:-}" ]]; then
  echo "building cairn (release)..." >&2
  cargo build --release --quiet --bin cairn
  CAIRN_BIN="$CARGO_TARGET_DIR/release/cairn"
fi
export CVC5=${CVC5:-$VENV/bin/cvc5}
[[ -x "$CVC5" ]] || { echo "no solver at $CVC5: run scripts/test.sh --rust once to install it" >&2; exit 2; }
CAIRN_BIN="$(realpath "$CAIRN_BIN")" CAIRN_REPO="$(pwd)" \
  "$VENV/bin/python" benches/policy_bench.py --policies "${POLICIES:-1000}" --runs "${RUNS:-3}"
