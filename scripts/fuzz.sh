#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (nightly toolchain; cargo-fuzz is installed if missing).
#
#   scripts/fuzz.sh                 every target, 600 s each
#   scripts/fuzz.sh TARGET [SECS]   one target (`scripts/fuzz.sh list` names them)
#   scripts/fuzz.sh build           only build the targets
#
# Each run starts from fuzz/corpus/TARGET plus seeds made from the repository's fixtures
# (fuzz/seeds/make.py), adds what it finds to fuzz/corpus/TARGET and then minimises that corpus
# in place (commit it: the normal test command replays it). A crash is kept in
# fuzz/artifacts/TARGET/ and ends the script with exit 1; once fixed, copy the input to
# fuzz/regressions/TARGET/ under a name that says what it was, so the replay keeps it fixed.
#
# Environment: FUZZ_SANITIZER (none|address, default none: the targets' crates forbid unsafe
# code, and without ASan a build takes less time and runs about twice as many executions),
# FUZZ_JOBS (parallel workers for one target, default 1), CARGO_TARGET_DIR (default a cache
# outside the clone: the first build takes about 15 minutes on 2 cores).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/fuzz-target}
SANITIZER=${FUZZ_SANITIZER:-none}
JOBS=${FUZZ_JOBS:-1}
what=${1:-all}
secs=${2:-600}

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

targets=$(cd fuzz/fuzz_targets && ls ./*.rs | sed 's|^\./||; s|\.rs$||')
if [[ $what == list ]]; then
  echo "$targets"
  exit 0
fi

fuzz() { (cd fuzz && cargo +nightly fuzz "$@"); }

echo "==> building the fuzz targets (sanitizer: $SANITIZER)"
fuzz build --dev --sanitizer "$SANITIZER"
[[ $what == build ]] && exit 0

run_one() {
  local t=$1
  local seeds log
  seeds=$(mktemp -d)
  log=$(mktemp)
  python3 fuzz/seeds/make.py "$seeds" >/dev/null
  mkdir -p "fuzz/corpus/$t" "$seeds/$t"
  # Inputs are kept short where the parser's state is small, so the corpus stays small enough to
  # keep in the repository; sources of records get room for several.
  local max_len=16384
  case $t in bearer|headers) max_len=2048 ;; chat_request|upstream_response|record_lines|mcp_message) max_len=8192 ;; esac
  local parallel=()
  [[ $JOBS -gt 1 ]] && parallel=(-jobs="$JOBS" -workers="$JOBS")
  echo "==> $t for ${secs}s"
  local status=0
  fuzz run --dev --sanitizer "$SANITIZER" "$t" "corpus/$t" "$seeds/$t" -- \
    -max_total_time="$secs" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 \
    "${parallel[@]}" -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" \
    | sed "s/^/   $t /" || true
  if [[ $status -ne 0 ]]; then
    tail -n 60 "$log"
    echo "==> $t: CRASH (exit $status); the input is under fuzz/artifacts/$t/" >&2
    rm -rf "$seeds"
    return 1
  fi
  fuzz cmin --dev --sanitizer "$SANITIZER" "$t" "corpus/$t" -- -max_len="$max_len" >"$log" 2>&1 \
    || { tail -n 20 "$log"; return 1; }
  echo "   $t corpus: $(ls "fuzz/corpus/$t" | wc -l) inputs, $(du -sk "fuzz/corpus/$t" | cut -f1) KiB"
  rm -rf "$seeds" "$log"
}

failed=0
if [[ $what == all ]]; then
  for t in $targets; do run_one "$t" || failed=1; done
else
  grep -qx "$what" <<<"$targets" || { echo "no fuzz target \`$what\`; one of: $targets" >&2; exit 2; }
  run_one "$what" || failed=1
fi
exit $failed
