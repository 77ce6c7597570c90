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

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
bench_init
mkdir -p notes
printf 'Incident review: the outage began with an expired certificate.\n' >notes/review.md

start_upstream() { # -> sets UPSTREAM (host:port/mcp) and UPSTREAM_PID
  "$CAIRN" gateway demo-mcp-server --root "$WORK/notes" --listen 127.0.0.1:0 >up.out 2>&1 &
  UPSTREAM_PID=$!
  PIDS+=("$UPSTREAM_PID")
  UPSTREAM=$(wait_line up.out)
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
    summarise "  ${rate} calls/s offered" "$direct" "$through" "$rss" calls/s
    echo "    mean per stage: $(stage_means "$before" "$after")"
  done
  records=$(cat "$WORK"/records-"$name"/segment-*.jsonl | wc -l)
  kill "$GATEWAY_PID" 2>/dev/null || true
  wait "$GATEWAY_PID" 2>/dev/null || true
  echo "  records written: $records; verify: $("$CAIRN" audit verify "$WORK/records-$name" --pubkey "$WORK/keys/signing.pub" 2>&1 | tail -1)"
done
