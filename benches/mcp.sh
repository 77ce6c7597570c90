#!/usr/bin/env bash
# MCP benchmark: `tools/call` against a local upstream MCP server (Cairn's demo notes server over
# stateless Streamable HTTP) directly, then the same calls through the gateway's /mcp, in the
# same run. Two configurations: `core` (API key, Cedar, the call's decision durable before the
# upstream is called, outcome records; guardrails, limits and spans off) and `all` (every
# control on: OIDC JWTs from a real issuer, Cedar, guardrails on arguments and results, Redis
# rate limits per principal and tool, records, OTLP spans to a real receiver). Open loop at
# fixed rates (oha with --latency-correction, so queueing delay counts). Prints throughput,
# p50/p99, the latency Cairn adds, RSS, and the mean time per pipeline stage from the gateway's
# own histograms (the difference of two /metrics snapshots).
#
#   benches/mcp.sh                    rates 500 1000 2000, 10 s each, core and all
#   RATES="1000" DURATION=5 CONTROLS=all benches/mcp.sh
#   CAIRN_BIN=target/debug/cairn RATES=100 DURATION=2 benches/mcp.sh    # check the script quickly
#
# The `all` configuration needs redis-server and the test venv (scripts/test.sh creates both).
# Builds `cairn` with --release (about 40 minutes the first time on 2 cores) and installs oha
# under ~/.cache/cairn/tools. Load generator, upstream and gateway share this machine's cores:
# compare the ratios, not absolute numbers across machines.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
RATES=${RATES:-"500 1000 2000"}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-128}
CONTROLS=${CONTROLS:-"core all"}
VENV=${CAIRN_VENV:-$CACHE/venv}
OHA_VERSION=1.16.0

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ -n "${CAIRN_BIN:-}" ]]; then
  CAIRN=$CAIRN_BIN
else
  echo "building cairn (release)..." >&2
  cargo build --release --quiet --bin cairn
  CAIRN="$CARGO_TARGET_DIR/release/cairn"
fi
CAIRN=$(realpath "$CAIRN")

OHA="$CACHE/tools/bin/oha"
if [[ ! -x "$OHA" ]]; then
  echo "installing oha $OHA_VERSION..." >&2
  cargo install oha --version "$OHA_VERSION" --locked --quiet --root "$CACHE/tools"
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cp -r policies "$WORK/policies"
cd "$WORK"
"$CAIRN" keys generate --out keys >/dev/null
"$CAIRN" policy bundle --key keys/signing.key --out bundle.tar >/dev/null
KEY="bench-key-0123456789abcdef0123456789abcdef"
KEY_SHA=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)
mkdir -p notes
printf 'Incident review: the outage began with an expired certificate.\n' >notes/review.md

wait_line() { # file -> the address after http://
  for _ in $(seq 1 300); do
    if grep -q "listening on http://" "$1" 2>/dev/null; then
      grep -m1 "listening on http://" "$1" | sed 's#.*http://##'
      return
    fi
    sleep 0.05
  done
  echo "server did not start: $(cat "$1")" >&2
  exit 1
}

start_upstream() { # -> sets UPSTREAM (host:port/mcp) and UPSTREAM_PID
  "$CAIRN" gateway demo-mcp-server --root "$WORK/notes" --listen 127.0.0.1:0 >up.out 2>&1 &
  UPSTREAM_PID=$!
  PIDS+=("$UPSTREAM_PID")
  UPSTREAM=$(wait_line up.out)
}

start_peers() { # redis, OIDC issuer and OTLP sink for the `all` configuration
  REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >redis.log 2>&1 &
  PIDS+=($!)
  "$VENV/bin/python" "$ROOT/benches/controls_helpers.py" "$WORK/peers.txt" >peers.log 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 200); do [[ -s peers.txt ]] && break; sleep 0.05; done
  ISSUER=$(sed -n 's/^issuer=//p' peers.txt)
  TOKEN=$(sed -n 's/^token=//p' peers.txt)
  OTLP=$(sed -n 's/^otlp=//p' peers.txt)
}

controls_toml() { # configuration name
  if [[ "$1" == core ]]; then
    printf '[guardrails]\nenabled = false\n'
    return
  fi
  cat <<EOF
[auth.oidc]
issuer = "$ISSUER"
audiences = ["cairn"]
[guardrails]
enabled = true
check_output = true
denied_terms = ["project nightingale"]
[limits]
backend = "redis"
redis_url = "redis://127.0.0.1:$REDIS_PORT/"
[[limits.rules]]
name = "user-tool-rpm"
scope = "user_tool"
requests_per_minute = 10000000
[[limits.rules]]
name = "tool-rpm"
scope = "tool"
requests_per_minute = 10000000
[telemetry]
otlp_endpoint = "$OTLP"
batch_delay_ms = 200
EOF
}

metrics_snapshot() { # gateway address -> "stage sum count" per line
  curl -s "http://$1/metrics" | python3 -c '
import re, sys
sums, counts = {}, {}
for line in sys.stdin:
    m = re.match(r"cairn_stage_duration_seconds_(sum|count)\{stage=\"(\w+)\"\} (\S+)", line)
    if m:
        (sums if m[1] == "sum" else counts)[m[2]] = float(m[3])
for stage in sums:
    print(stage, sums[stage], counts.get(stage, 0))
'
}

stage_means() { # before-snapshot after-snapshot -> "stage mean_us ..." over the measured run only
  python3 - "$1" "$2" <<'PY'
import sys
def parse(text):
    out = {}
    for line in text.splitlines():
        stage, s, c = line.split()
        out[stage] = (float(s), float(c))
    return out
before, after = parse(sys.argv[1]), parse(sys.argv[2])
order = ["authenticate", "guardrails", "policy", "budget", "record", "upstream", "total"]
parts = []
for stage in order:
    s1, c1 = after.get(stage, (0.0, 0.0))
    s0, c0 = before.get(stage, (0.0, 0.0))
    if c1 > c0:
        parts.append(f"{stage} {(s1 - s0) / (c1 - c0) * 1e6:.0f} us")
print("  ".join(parts))
PY
}

start_gateway() { # upstream, name, controls -> sets GATEWAY (address) and GATEWAY_PID
  cat >"$2.toml" <<EOF
[server]
listen = "127.0.0.1:0"
[policy]
bundle = "$WORK/bundle.tar"
public_key = "$WORK/keys/signing.pub"
[records]
dir = "$WORK/records-$2"
signing_key = "$WORK/keys/signing.key"
[[auth.api_keys]]
id = "bench"
sha256 = "$KEY_SHA"
principal = 'User::"bench"'
groups = ["engineering"]
attributes = { department = "engineering", clearance = 2 }
[[mcp.servers]]
name = "notes"
url = "http://$1"
max_data_level = 1
$(controls_toml "$3")
EOF
  "$CAIRN" gateway serve --config "$2.toml" >"$2.out" 2>"$2.err" &
  GATEWAY_PID=$!
  PIDS+=("$GATEWAY_PID")
  GATEWAY=$(wait_line "$2.out")
}

# One stateless (2026-07-28) tools/call: `_meta` in the body, the mirrored headers.
body() { # tool name as the endpoint names it
  printf '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","arguments":{"path":"review.md"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}' "$1"
}

load() { # url rate tool [credential] -> json
  local args=(-z "${DURATION}s" -q "$2" -c "$CONNECTIONS" --latency-correction --no-tui --output-format json
              -m POST -T application/json -d "$(body "$3")"
              -H "Accept: application/json, text/event-stream" -H "MCP-Protocol-Version: 2026-07-28"
              -H "Mcp-Method: tools/call" -H "Mcp-Name: $3")
  [[ -n "${4:-}" ]] && args+=(-H "Authorization: Bearer $4")
  "$OHA" "${args[@]}" "$1"
}

summarise() { # label json_direct json_gateway rss_kb
  python3 - "$@" <<'PY'
import json, sys
label, d, g, rss = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
def stats(j):
    s, p = j["summary"], j["latencyPercentiles"]
    ok = sum(v for k, v in j.get("statusCodeDistribution", {}).items() if k.startswith("2"))
    total = max(sum(j.get("statusCodeDistribution", {}).values()), 1)
    return s["requestsPerSec"] * ok / total, p["p50"] * 1e3, p["p99"] * 1e3, ok / total
dr, d50, d99, dok = stats(d)
gr, g50, g99, gok = stats(g)
print(f"{label:<24} direct {dr:8.0f} calls/s p50 {d50:7.2f} ms p99 {d99:8.2f} ms | cairn {gr:8.0f} calls/s "
      f"p50 {g50:7.2f} ms p99 {g99:8.2f} ms ok {gok*100:5.1f}% | added p50 {g50-d50:+7.2f} ms p99 {g99-d99:+8.2f} ms "
      f"| throughput ratio {gr/max(dr,1):.2f} | gateway RSS {rss/1024:.0f} MiB")
PY
}

# Every call must be a tool result, not a JSON-RPC error on 200: check one of each first.
check_answer() { # url tool [credential]
  local auth=()
  [[ -n "${3:-}" ]] && auth=(-H "Authorization: Bearer $3")
  local out
  out=$(curl -s -X POST "$1" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/call' -H "Mcp-Name: $2" "${auth[@]}" -d "$(body "$2")")
  if [[ "$out" != *'"result"'* || "$out" == *'"isError":true'* ]]; then
    echo "a tools/call through $1 did not succeed: $out" >&2
    exit 1
  fi
}

if [[ " $CONTROLS " == *" all "* ]]; then start_peers; fi
start_upstream
up=$UPSTREAM
check_answer "http://$up" read_file

for controls in $CONTROLS; do
  credential=$KEY
  [[ "$controls" == all ]] && credential=$TOKEN
  name="gw-$controls"
  start_gateway "$up" "$name" "$controls"
  gw=$GATEWAY
  check_answer "http://$gw/mcp" notes__read_file "$credential"
  "$OHA" -n 2000 -c 32 --no-tui -m POST -T application/json -d "$(body notes__read_file)" \
    -H "MCP-Protocol-Version: 2026-07-28" -H "Mcp-Method: tools/call" -H "Mcp-Name: notes__read_file" \
    -H "Authorization: Bearer $credential" "http://$gw/mcp" >/dev/null
  echo "controls: $controls"
  for rate in $RATES; do
    direct=$(load "http://$up" "$rate" read_file)
    before=$(metrics_snapshot "$gw")
    through=$(load "http://$gw/mcp" "$rate" notes__read_file "$credential")
    after=$(metrics_snapshot "$gw")
    rss=$(ps -o rss= -p "$GATEWAY_PID" | tr -d ' ')
    summarise "  ${rate} calls/s offered" "$direct" "$through" "$rss"
    echo "    mean per stage: $(stage_means "$before" "$after")"
  done
  records=$(cat "$WORK"/records-"$name"/segment-*.jsonl | wc -l)
  kill "$GATEWAY_PID" 2>/dev/null || true
  wait "$GATEWAY_PID" 2>/dev/null || true
  echo "  records written: $records; verify: $("$CAIRN" audit verify "$WORK/records-$name" --pubkey "$WORK/keys/signing.pub" 2>&1 | tail -1)"
done
