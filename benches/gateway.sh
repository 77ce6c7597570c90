#!/usr/bin/env bash
# Gateway benchmark: the mock upstream served directly over HTTP, then the same upstream through
# Cairn. Two configurations: `core` (API key, Cedar, durable signed records; guardrails, limits
# and spans off) and `all` (every control on: OIDC JWTs from a real issuer, Cedar, guardrails on
# input and output, Redis budgets and rate limits, records, OTLP spans to a real receiver).
# Open-loop at fixed rates (oha with --latency-correction, so queueing delay counts), with an
# instant upstream and a 20 ms one. Prints throughput, p50/p99, the latency Cairn adds, RSS, and
# for each rate the mean time per pipeline stage from the gateway's own histograms (the difference
# of two /metrics snapshots, so warm-up and other rates do not count).
#
#   benches/gateway.sh                 rates 500 1000 2000 4000, 10 s each, core and all
#   RATES="1000 2000" DURATION=5 CONTROLS=all benches/gateway.sh
#
# The `all` configuration needs redis-server and the test venv (scripts/test.sh creates both).
#
# Builds `cairn` with --release (about 40 minutes the first time on 2 cores) and installs oha
# under ~/.cache/cairn/tools. Everything runs on this machine: load generator, upstream and
# gateway share its cores, so compare the ratios, not absolute numbers across machines.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
RATES=${RATES:-"500 1000 2000 4000"}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-256}
CONTROLS=${CONTROLS:-"core all"}
VENV=${CAIRN_VENV:-$CACHE/venv}
OHA_VERSION=1.16.0

# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
bench_init

# These run in the current shell (not in $(...)) so the pids they record reach `cleanup`.
start_upstream() { # latency_ms -> sets UPSTREAM (address) and UPSTREAM_PID
  "$CAIRN" gateway mock-upstream --listen 127.0.0.1:0 --latency-ms "$1" >"up-$1.out" 2>&1 &
  UPSTREAM_PID=$!
  PIDS+=("$UPSTREAM_PID")
  UPSTREAM=$(wait_line "up-$1.out")
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
name = "team-daily"
scope = "team"
usd_per_day = 1000000
[[limits.rules]]
name = "user-rpm"
scope = "user"
requests_per_minute = 10000000
tokens_per_minute = 1000000000
[telemetry]
otlp_endpoint = "$OTLP"
batch_delay_ms = 200
EOF
}

start_gateway() { # upstream address, name, controls -> sets GATEWAY (address) and GATEWAY_PID
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
[[models]]
id = "claude-haiku"
provider = "openai"
region = "us-east-1"
max_data_level = 1
cost_tier = "low"
[providers.openai]
base_url = "http://$1/v1"
$(controls_toml "$3")
EOF
  "$CAIRN" gateway serve --config "$2.toml" >"$2.out" 2>"$2.err" &
  GATEWAY_PID=$!
  PIDS+=("$GATEWAY_PID")
  GATEWAY=$(wait_line "$2.out")
}

BODY='{"model":"claude-haiku","messages":[{"role":"user","content":"Summarise the incident review in two sentences."}],"max_tokens":32}'

load() { # url rate [credential] -> json
  local args=(-z "${DURATION}s" -q "$2" -c "$CONNECTIONS" --latency-correction --no-tui --output-format json
              -m POST -T application/json -d "$BODY")
  [[ -n "${3:-}" ]] && args+=(-H "Authorization: Bearer $3")
  "$OHA" "${args[@]}" "$1"
}

if [[ " $CONTROLS " == *" all "* ]]; then start_peers; fi

for controls in $CONTROLS; do
  credential=$KEY
  [[ "$controls" == all ]] && credential=$TOKEN
  for latency in 0 20; do
    start_upstream "$latency"
    up=$UPSTREAM
    name="gw-$controls-$latency"
    start_gateway "$up" "$name" "$controls"
    gw=$GATEWAY
    # Warm up connections and caches.
    "$OHA" -n 2000 -c 32 --no-tui -m POST -T application/json -d "$BODY" -H "Authorization: Bearer $credential" "http://$gw/v1/chat/completions" >/dev/null
    echo "controls: $controls, upstream latency ${latency} ms"
    for rate in $RATES; do
      direct=$(load "http://$up/v1/chat/completions" "$rate")
      before=$(metrics_snapshot "$gw")
      through=$(load "http://$gw/v1/chat/completions" "$rate" "$credential")
      after=$(metrics_snapshot "$gw")
      rss=$(ps -o rss= -p "$GATEWAY_PID" | tr -d ' ')
      summarise "  ${rate} req/s offered" "$direct" "$through" "$rss"
      echo "    mean per stage: $(stage_means "$before" "$after")"
    done
    records=$(cat "$WORK"/records-"$name"/segment-*.jsonl | wc -l)
    echo "  records written: $records; verify: $("$CAIRN" audit verify "$WORK/records-$name" --pubkey "$WORK/keys/signing.pub" 2>&1 | tail -1)"
    kill "$GATEWAY_PID" "$UPSTREAM_PID" 2>/dev/null || true
  done
done
