"""Hot reload in the middle of traffic: a tampered bundle is rejected and counted while the old
policy keeps deciding with zero failed requests; a valid one takes over (file change or SIGHUP)."""

import os
import signal
import threading
import time

import httpx

from gateway_harness import ALICE_KEY, Gateway, base_config, chat_body, make_signed_bundle

NEW_POLICY = """
@id("no-public-data-to-haiku")
forbid (
  principal,
  action == Action::"invoke_model",
  resource == Model::"claude-haiku"
)
when { context.data_level == 0 };
"""


def ask(gw, classification="public"):
    return httpx.post(
        f"{gw.base_url}/chat/completions",
        json=chat_body(model="claude-haiku"),
        headers={"authorization": f"Bearer {ALICE_KEY}", "x-cairn-data-classification": classification},
        timeout=10,
    )


def replace_atomically(path, data: bytes):
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def reloads(gw, result):
    for line in gw.metrics().splitlines():
        if line.startswith("cairn_bundle_reloads_total") and f'result="{result}"' in line:
            return float(line.split()[-1])
    return 0.0


def wait_for(cond, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_tampered_bundle_mid_traffic_changes_nothing(workdir):
    bundle = make_signed_bundle(workdir)
    good = bundle.read_bytes()
    gw = Gateway(workdir, base_config(workdir)).start()
    statuses, stop = [], threading.Event()

    def traffic():
        while not stop.is_set():
            statuses.append(ask(gw).status_code)

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        tampered = bytearray(good)
        i = tampered.index(b"interns-low-cost-only") + 3
        tampered[i] ^= 0x20  # one byte of a policy member
        replace_atomically(bundle, bytes(tampered))
        assert wait_for(lambda: reloads(gw, "rejected") >= 1), gw.err.read_text()
        # Traffic goes on after the rejection too (a slow machine is given time, not excused).
        seen = len(statuses)
        wait_for(lambda: len(statuses) >= seen + 20)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(statuses) > 20
    assert set(statuses) == {200}, f"failed requests during reload: {sorted(set(statuses))}"
    assert "policy bundle rejected" in gw.err.read_text()
    assert httpx.get(f"{gw.url}/readyz").status_code == 200

    # A valid new bundle takes over on the file change.
    (workdir / "policies" / "extra.cedar").write_text(NEW_POLICY)
    make_signed_bundle(workdir, name="next.tar")
    replace_atomically(bundle, (workdir / "next.tar").read_bytes())
    assert wait_for(lambda: ask(gw).status_code == 403)
    assert ask(gw, "internal").status_code == 200
    assert reloads(gw, "loaded") >= 2
    gw.stop()
    digests = {r["bundle"] for r in gw.records() if r["kind"] == "decision"}
    assert len(digests) == 2


def test_sighup_reloads(workdir):
    bundle = make_signed_bundle(workdir)
    gw = Gateway(workdir, base_config(workdir, extra="") .replace("[policy]\n", "[policy]\nwatch = false\n")).start()
    assert ask(gw).status_code == 200
    (workdir / "policies" / "extra.cedar").write_text(NEW_POLICY)
    make_signed_bundle(workdir, name="next.tar")
    replace_atomically(bundle, (workdir / "next.tar").read_bytes())
    time.sleep(0.5)
    assert ask(gw).status_code == 200, "with watch = false only SIGHUP reloads"
    gw.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: ask(gw).status_code == 403)
    gw.stop()
