"""A bounded soak of the real gateway (run by scripts/soak.sh): mixed traffic for a fixed time
with periodic bundle reloads, the gateway's RSS and open file descriptors sampled every 10 s and
printed with their slope, then the record chain verified and every answer matched to its
decision record. Exit 1 when an answer has no record, the chain does not verify, or a sample
series grows beyond its bound."""

import argparse
import asyncio
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import httpx  # noqa: E402
from conftest import REPO, run  # noqa: E402
from gateway_harness import ALICE_KEY, CI_KEY, Gateway, base_config, chat_body, make_signed_bundle  # noqa: E402

SAMPLE_S = 10


def proc_sample(pid):
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    return rss, fds


def slope(points):
    """Least-squares slope of (t, v) points, per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if den == 0 else 60 * sum((t - mt) * (v - mv) for t, v in points) / den


class Tally:
    def __init__(self):
        self.kinds = {}
        self.ids = set()
        self.missing_id = []

    def note(self, kind, resp):
        key = (kind, resp.status_code)
        self.kinds[key] = self.kinds.get(key, 0) + 1
        did = resp.headers.get("x-cairn-decision-id")
        if did:
            self.ids.add(did)
        else:
            self.missing_id.append((kind, resp.status_code))


async def one(client, base, tally, rng):
    ci = {"authorization": f"Bearer {CI_KEY}"}
    alice = {"authorization": f"Bearer {ALICE_KEY}"}
    roll = rng.random()
    if roll < 0.40:
        kind = "allowed"
        r = await client.post(f"{base}/v1/chat/completions", headers=ci, json=chat_body())
    elif roll < 0.52:
        kind = "denied"
        h = dict(alice, **{"x-cairn-data-classification": "restricted"})
        r = await client.post(f"{base}/v1/chat/completions", headers=h, json=chat_body())
    elif roll < 0.72:
        kind = "streamed"
        async with client.stream("POST", f"{base}/v1/chat/completions", headers=ci,
                                 json=chat_body(stream=True)) as r:
            async for _ in r.aiter_bytes():
                pass
    elif roll < 0.82:
        kind = "broken-off"
        async with client.stream("POST", f"{base}/v1/chat/completions", headers=ci,
                                 json=chat_body(stream=True, text="tell me a long story " * 20)) as r:
            async for _ in r.aiter_bytes():
                break  # leave mid-stream: the connection is closed with the answer unread
    elif roll < 0.95:
        kind = "auth-failure"
        h = rng.choice([{}, {"authorization": "Bearer wrong-key"}, {"authorization": "Basic eDp5"},
                        {"authorization": "Bearer a.b.c"}])
        r = await client.post(f"{base}/v1/chat/completions", headers=h, json=chat_body())
    else:
        kind = "models"
        r = await client.get(f"{base}/v1/models", headers=ci)
    tally.note(kind, r)


async def traffic(base, seconds, concurrency, tally, reload, samples, pid):
    rng = random.Random(7)
    stop_at = time.monotonic() + seconds
    errors = []

    async def worker(i):
        # A new connection now and then, as clients behind pools do.
        while time.monotonic() < stop_at:
            async with httpx.AsyncClient(timeout=30) as client:
                for _ in range(rng.randint(20, 200)):
                    if time.monotonic() >= stop_at:
                        break
                    try:
                        await one(client, base, tally, rng)
                    except httpx.HTTPError as e:
                        errors.append(f"{type(e).__name__}: {e}")

    async def sampler():
        t0 = time.monotonic()
        next_reload = t0 + reload
        while time.monotonic() < stop_at:
            rss, fds = proc_sample(pid)
            t = time.monotonic() - t0
            samples.append((t, rss, fds))
            done = sum(tally.kinds.values())
            print(f"  t={t:5.0f}s  rss={rss / 1024:6.1f} MiB  fds={fds:4d}  answers={done}", flush=True)
            if time.monotonic() >= next_reload:
                await asyncio.to_thread(reload_bundle)
                next_reload += reload
            await asyncio.sleep(SAMPLE_S)

    await asyncio.gather(sampler(), *(worker(i) for i in range(concurrency)))
    return errors


WORK = None
RELOADS = 0


def reload_bundle():
    global RELOADS
    make_signed_bundle(WORK, name="next.tar")
    shutil.move(WORK / "next.tar", WORK / "bundle.tar")
    RELOADS += 1


def main():
    global WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--reload-every", type=int, default=60)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--max-rss-slope-kib", type=float, default=1024.0,
                    help="fail when RSS grows faster than this, KiB per minute, after warm-up")
    args = ap.parse_args()
    WORK = Path(args.workdir)
    shutil.copytree(REPO / "policies", WORK / "policies")
    make_signed_bundle(WORK)
    gw = Gateway(WORK, base_config(WORK)).start()
    samples = []
    tally = Tally()
    print(f"soak: {args.seconds}s, {args.concurrency} clients, bundle reload every {args.reload_every}s, "
          f"gateway pid {gw.proc.pid}", flush=True)
    try:
        errors = asyncio.run(traffic(gw.url, args.seconds, args.concurrency, tally,
                                     args.reload_every, samples, gw.proc.pid))
        rss, fds = proc_sample(gw.proc.pid)
        samples.append((args.seconds, rss, fds))
    finally:
        code = gw.stop()
    print(f"gateway exited {code}")
    verify = run(["audit", "verify", "records", "--pubkey", "keys/signing.pub", "--require-sealed"],
                 cwd=WORK, check=False)
    recorded = {r["id"] for r in gw.records() if r.get("kind", "decision") == "decision" and "id" in r}
    unrecorded = sorted(tally.ids - recorded)

    warm = [s for s in samples if s[0] >= 60] or samples
    rss_slope = slope([(t, r) for t, r, _ in warm])
    fd_slope = slope([(t, f) for t, _, f in warm])
    total = sum(tally.kinds.values())
    print(f"\nanswers: {total} in {args.seconds}s ({total / args.seconds:.0f}/s); bundle reloads: {RELOADS}")
    for (kind, status), n in sorted(tally.kinds.items()):
        print(f"  {kind:13s} {status}  {n}")
    print(f"transport errors seen by clients: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    print(f"RSS: first {samples[0][1] / 1024:.1f} MiB, last {samples[-1][1] / 1024:.1f} MiB, "
          f"max {max(s[1] for s in samples) / 1024:.1f} MiB; slope after 60 s {rss_slope:+.1f} KiB/min")
    print(f"open fds: first {samples[0][2]}, last {samples[-1][2]}, max {max(s[2] for s in samples)}; "
          f"slope after 60 s {fd_slope:+.2f} /min")
    print(f"answers without x-cairn-decision-id: {len(tally.missing_id)}")
    print(f"answers whose decision id has no record: {len(unrecorded)}")
    print(f"audit verify: exit {verify.returncode}: {(verify.stdout + verify.stderr).strip().splitlines()[-1:]}")
    ok = (code == 0 and verify.returncode == 0 and not unrecorded and not tally.missing_id
          and rss_slope <= args.max_rss_slope_kib and fd_slope <= 1.0)
    print("soak: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
