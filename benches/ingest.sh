#!/usr/bin/env bash
# CloudTrail ingest benchmark: a generated set of realistic records (the repository's Stratus
# samples re-issued with new ids and times) as gzip files in the delivery layout on local disk,
# ingested by `cairn ingest cloudtrail` and, in the same run, by DuckDB doing the same job
# (read_json with an explicit schema, then COPY ... TO zstd Parquet partitioned by date).
# Prints records/s, MB/s, the ratio, and peak RSS of each.
#
#   benches/ingest.sh                 1,000,000 records
#   RECORDS=200000 benches/ingest.sh
#
# Builds `cairn` with --release (about 40 minutes the first time) and uses the test venv's DuckDB
# (run scripts/test.sh once first). Generated data is cached under ~/.cache/cairn/bench-data.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
echo "building cairn (release)..." >&2
cargo build --release --quiet --bin cairn
VENV=${CAIRN_VENV:-$CACHE/venv}
CAIRN_BIN="$CARGO_TARGET_DIR/release/cairn" CAIRN_REPO="$(pwd)" \
  "$VENV/bin/python" benches/ingest_bench.py --records "${RECORDS:-1000000}" --data "$CACHE/bench-data"
