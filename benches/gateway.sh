#!/usr/bin/env bash
# Gateway benchmark: the mock upstream served directly over HTTP, then the same upstream through
# Cairn with authentication (API key), Cedar and durable signed records on. Open-loop at fixed
# rates (oha with --latency-correction, so queueing delay counts), with an instant upstream and a
# 20 ms one. Prints throughput, p50/p99 and the latency Cairn adds, and RSS.
#
#   benches/gateway.sh                 rates 500 1000 2000 4000, 10 s each
#   RATES="1000 2000" DURATION=5 benches/gateway.sh
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
OHA_VERSION=1.16.0

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
echo "building cairn (release)..." >&2
cargo build --release --quiet --bin cairn
CAIRN="$CARGO_TARGET_DIR/release/cairn"

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

wait_line() { # file pattern -> the address after http://
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

start_upstream() { # latency_ms -> address
  "$CAIRN" gateway mock-upstream --listen 127.0.0.1:0 --latency-ms "$1" >"up-$1.out" 2>&1 &
  PIDS+=($!)
  wait_line "up-$1.out"
}

start_gateway() { # upstream address, name -> address
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
EOF
  "$CAIRN" gateway serve --config "$2.toml" >"$2.out" 2>"$2.err" &
  PIDS+=($!)
  GATEWAY_PID=$!
  wait_line "$2.out"
}

BODY='{"model":"claude-haiku","messages":[{"role":"user","content":"Summarise the incident review in two sentences."}],"max_tokens":32}'

load() { # url rate [auth] -> json
  local args=(-z "${DURATION}s" -q "$2" -c "$CONNECTIONS" --latency-correction --no-tui --output-format json
              -m POST -T application/json -d "$BODY")
  [[ -n "${3:-}" ]] && args+=(-H "Authorization: Bearer $3")
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
print(f"{label:<24} direct {dr:8.0f} req/s p50 {d50:7.2f} ms p99 {d99:8.2f} ms | cairn {gr:8.0f} req/s "
      f"p50 {g50:7.2f} ms p99 {g99:8.2f} ms ok {gok*100:5.1f}% | added p50 {g50-d50:+7.2f} ms p99 {g99-d99:+8.2f} ms "
      f"| throughput ratio {gr/max(dr,1):.2f} | gateway RSS {rss/1024:.0f} MiB")
PY
}

for latency in 0 20; do
  up=$(start_upstream "$latency")
  gw=$(start_gateway "$up" "gw-$latency")
  # Warm up connections and caches.
  "$OHA" -n 2000 -c 32 --no-tui -m POST -T application/json -d "$BODY" -H "Authorization: Bearer $KEY" "http://$gw/v1/chat/completions" >/dev/null
  echo "upstream latency ${latency} ms"
  for rate in $RATES; do
    direct=$(load "http://$up/v1/chat/completions" "$rate")
    through=$(load "http://$gw/v1/chat/completions" "$rate" "$KEY")
    rss=$(ps -o rss= -p "$GATEWAY_PID" | tr -d ' ')
    summarise "  ${rate} req/s offered" "$direct" "$through" "$rss"
  done
  records=$(cat "$WORK"/records-gw-"$latency"/segment-*.jsonl | wc -l)
  echo "  records written: $records; verify: $("$CAIRN" audit verify "$WORK/records-gw-$latency" --pubkey "$WORK/keys/signing.pub" 2>&1 | tail -1)"
done
