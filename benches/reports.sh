#!/usr/bin/env bash
# Reports benchmark: a generated lake (>= 10M CloudTrail rows, >= 1M decisions) built from seed
# rows that Cairn itself ingested, then every report query run by Cairn (DataFusion) and by
# DuckDB on the same Parquet files in the same run; prints per-query times, ratios, and the
# bytes a one-day query reads.
#
#   benches/reports.sh                       10M CloudTrail rows, 1M decisions
#   CT_ROWS=1000000 DECISIONS=100000 benches/reports.sh
#
# Builds `cairn` with --release (about 40 minutes the first time) and uses the test venv.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
echo "building cairn (release)..." >&2
cargo build --release --quiet --bin cairn
VENV=${CAIRN_VENV:-$CACHE/venv}
CAIRN_BIN="$CARGO_TARGET_DIR/release/cairn" CAIRN_REPO="$(pwd)" \
  "$VENV/bin/python" benches/reports_bench.py --ct-rows "${CT_ROWS:-10000000}" --decisions "${DECISIONS:-1000000}" --data "$CACHE/bench-data"
