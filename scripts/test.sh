#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs every check and test.
#
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --rust     only fmt, clippy and the Rust tests
#
# What it installs, all outside the repository unless said otherwise:
#   - Debian packages the tests start as real servers or drive: redis-server, chromium
#     (only when missing; needs root or sudo)
#   - a Python venv with tests/python/requirements.txt (pinned): the OpenAI SDK, DuckDB,
#     pyarrow, SeaweedFS, moto, botocore, opentelemetry-proto, the MCP SDK, ...
#   - cvc5 (PyPI's `cvc5` bindings, in that venv) with scripts/cvc5-stdin.py installed as
#     $VENV/bin/cvc5 and exported as CVC5: the SMT solver `cairn policy diff` and `analyze` prove
#     with (also with --rust: the Rust tests prove too)
#   - the npm MCP reference servers (server-everything, server-filesystem) under
#     ~/.cache/cairn/npm, pinned
# Build output goes to $CARGO_TARGET_DIR (default ./target; .ci/run points it at a cache outside
# the clone). The first build takes about 7 minutes on 2 cores; nothing here builds --release.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
if [[ -n "${CI:-}" ]]; then
  export CARGO_INCREMENTAL=0
fi
VENV=${CAIRN_VENV:-$CACHE/venv}
ONLY_RUST=0
[[ "${1:-}" == "--rust" ]] && ONLY_RUST=1

started=$(date +%s)
phase() { printf '\n==> [%4ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [[ $ONLY_RUST -eq 0 && ${#need_apt[@]} -gt 0 ]]; then
  phase "installing Debian packages: ${need_apt[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

phase "Python venv at $VENV"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want=$(sha256sum tests/python/requirements.txt | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt
  echo "$want" > "$stamp"
fi
# The solver executable: the shim, run by the venv's Python (which has the cvc5 package).
{ echo "#!$VENV/bin/python"; tail -n +2 scripts/cvc5-stdin.py; } > "$VENV/bin/cvc5.tmp"
chmod +x "$VENV/bin/cvc5.tmp"
mv "$VENV/bin/cvc5.tmp" "$VENV/bin/cvc5"
export CVC5="$VENV/bin/cvc5"

if [[ $ONLY_RUST -eq 0 ]]; then
  # The MCP reference servers the gateway's tests run as upstreams, pinned, in the cache.
  NPM_DIR=${CAIRN_NPM:-$CACHE/npm}
  npm_want="@modelcontextprotocol/server-everything@2026.8.31 @modelcontextprotocol/server-filesystem@2026.8.31"
  if [[ "$(cat "$NPM_DIR/.installed" 2>/dev/null)" != "$npm_want" ]]; then
    phase "npm: $npm_want into $NPM_DIR"
    mkdir -p "$NPM_DIR"
    # shellcheck disable=SC2086
    (cd "$NPM_DIR" && npm install --no-audit --no-fund --silent $npm_want)
    echo "$npm_want" > "$NPM_DIR/.installed"
  fi
  export CAIRN_NPM="$NPM_DIR"
fi

phase "cargo fmt --check"
cargo fmt --all -- --check

phase "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

phase "building (debug)"
cargo build --workspace --all-targets --quiet
CAIRN_BIN="$CARGO_TARGET_DIR/debug/cairn"

phase "Rust tests (unit, crate and end-to-end)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --failure-output final --status-level fail
else
  cargo test --workspace --no-fail-fast --quiet
fi

phase "the repository's own policies: validate, fmt --check, test"
"$CAIRN_BIN" policy validate --policies policies --deny-warnings
"$CAIRN_BIN" policy fmt --check --policies policies
"$CAIRN_BIN" policy test --policies policies --min-coverage 100 --format github

if [[ $ONLY_RUST -eq 0 ]]; then
  phase "Python tests (real clients and servers)"
  CAIRN_BIN="$CAIRN_BIN" CAIRN_REPO="$ROOT" "$VENV/bin/python" -m pytest tests/python -q -p no:cacheprovider
fi

phase "all tests passed"
