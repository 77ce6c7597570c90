# Shared by the benchmark scripts (sourced, not run): the build, oha, a work directory with a
# dev key and the policies bundled, the peers of the `all` configuration, and the measuring
# helpers. Expects ROOT, CACHE, VENV and OHA_VERSION set, and the current directory at the
# repository's root.

bench_init() { # -> CAIRN, OHA, WORK (the current directory after), PIDS, KEY, KEY_SHA
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  if [[ -n "${CAIRN_BIN:-}" ]]; then
    CAIRN=$(realpath "$CAIRN_BIN")  # e.g. a debug build, to check the script itself quickly
  else
    echo "building cairn (release)..." >&2
    cargo build --release --quiet --bin cairn
    CAIRN="$CARGO_TARGET_DIR/release/cairn"
  fi

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
}

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

metrics_snapshot() { # gateway address -> stage histogram sums and counts, one "stage sum count" per line
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

stage_means() { # before-snapshot after-snapshot -> "stage mean_us ..." over the measured runs only
  python3 - "$1" "$2" <<'PY'
import sys
def parse(text):
    out = {}
    for line in text.splitlines():
        stage, s, c = line.split()
        out[stage] = (float(s), float(c))
    return out
before, after = parse(sys.argv[1]), parse(sys.argv[2])
order = ["authenticate", "guardrails", "budget", "policy", "cache", "record", "upstream", "total"]
parts = []
for stage in order:
    s1, c1 = after.get(stage, (0.0, 0.0))
    s0, c0 = before.get(stage, (0.0, 0.0))
    if c1 > c0:
        parts.append(f"{stage} {(s1 - s0) / (c1 - c0) * 1e6:.0f} us")
print("  ".join(parts))
PY
}

summarise() { # label json_direct json_gateway rss_kb [unit]
  python3 - "$@" <<'PY'
import json, sys
label, d, g, rss = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
unit = sys.argv[5] if len(sys.argv) > 5 else "req/s"
def stats(j):
    s, p = j["summary"], j["latencyPercentiles"]
    ok = sum(v for k, v in j.get("statusCodeDistribution", {}).items() if k.startswith("2"))
    total = max(sum(j.get("statusCodeDistribution", {}).values()), 1)
    return s["requestsPerSec"] * ok / total, p["p50"] * 1e3, p["p99"] * 1e3, ok / total
dr, d50, d99, dok = stats(d)
gr, g50, g99, gok = stats(g)
print(f"{label:<24} direct {dr:8.0f} {unit} p50 {d50:7.2f} ms p99 {d99:8.2f} ms | cairn {gr:8.0f} {unit} "
      f"p50 {g50:7.2f} ms p99 {g99:8.2f} ms ok {gok*100:5.1f}% | added p50 {g50-d50:+7.2f} ms p99 {g99-d99:+8.2f} ms "
      f"| throughput ratio {gr/max(dr,1):.2f} | gateway RSS {rss/1024:.0f} MiB")
PY
}
