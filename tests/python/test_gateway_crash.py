"""Durability: kill -9 under load and restart, every response the client saw has its record and
the chain verifies; an unwritable record directory means 503 and nothing served."""

import json
import threading
import time

import httpx

from capture_upstream import CaptureUpstream
from conftest import run
from gateway_harness import (ALICE_KEY, CI_KEY, Gateway, base_config, chat_body, kill9_under_load,
                             make_signed_bundle)


def test_kill_9_under_load_loses_no_answered_request(workdir):
    make_signed_bundle(workdir)
    config = base_config(workdir, extra="[providers.mock]\nlatency_ms = 3\n")
    gw = Gateway(workdir, config).start()
    answered = []

    def traffic(n, stop):
        client = httpx.Client(timeout=5)
        models = ["claude-haiku", "claude-sonnet", "claude-opus", "no-such-model"]
        i = 0
        while not stop.is_set():
            i += 1
            key = ALICE_KEY if i % 3 else CI_KEY
            body = chat_body(model=models[(i + n) % len(models)], stream=(i % 4 == 0))
            try:
                r = client.post(f"{gw.base_url}/chat/completions", json=body,
                                headers={"authorization": f"Bearer {key}"})
                if r.status_code == 200 and body["stream"]:
                    r.read()
                answered.append((r.headers["x-cairn-decision-id"], r.status_code))
            except httpx.HTTPError:
                pass  # the connection died with the gateway: nothing was answered

    kill9_under_load(gw, traffic, clients=8)
    assert len(answered) > 50, len(answered)

    # Restart on the same directory: it recovers the tail, then serves.
    gw2 = Gateway(workdir, config, name="gw2").start()
    assert httpx.post(f"{gw2.base_url}/chat/completions", json=chat_body(),
                      headers={"authorization": f"Bearer {ALICE_KEY}"}).status_code == 200
    gw2.stop()

    records = {r["id"]: r for r in gw2.records() if r["kind"] == "decision"}
    missing = [(i, s) for i, s in answered if i not in records]
    assert not missing, f"{len(missing)} answered requests have no record: {missing[:5]}"
    for decision_id, status in answered:
        rec = records[decision_id]
        if status != 200:
            assert rec["status"] == status
        else:
            assert rec["decision"] == "allow"
    v = run(["audit", "verify", "records", "--pubkey", "keys/signing.pub", "--require-sealed"], cwd=workdir)
    assert "chain and signatures intact" in v.stdout

    # Every allowed model call has exactly one outcome: the real one, or `lost` for the calls
    # the crash cut short, written on recovery before the recovery seal.
    everything = gw2.records()
    outcomes = {}
    for r in everything:
        if r["kind"] == "outcome":
            outcomes.setdefault(r["decision_id"], []).append(r)
    allowed = [r for r in records.values() if r["decision"] == "allow" and "status" not in r]
    assert allowed
    for d in allowed:
        assert len(outcomes.get(d["id"], [])) == 1, (d["id"], outcomes.get(d["id"]))
    lost = [o for os in outcomes.values() for o in os if o.get("reason") == "lost"]
    for o in lost:
        assert o["extra"]["lost"] is True
        assert "status" not in o
    seal = next(r for r in everything if r["kind"] == "seal" and "unclean" in r["seal_reason"])
    assert all(o["seq"] < seal["seq"] for o in lost)

    # The spend report counts them apart, so an auditor sees what was charged as reserved.
    run(["ingest", "decisions", "records", "--pubkey", "keys/signing.pub", "--lake", "lake"], cwd=workdir)
    days = sorted({o["ts"][:10] for os in outcomes.values() for o in os})
    r = run(["report", "spend", "--lake", "lake", "--format", "json", "--from", days[0], "--to", days[-1]],
            cwd=workdir)
    summary = json.loads(r.stdout)["reports"][0]["sections"]["summary"]["rows"][0]
    assert summary["lost_outcomes"] == len(lost)
    assert summary["completions"] == sum(len(os) for os in outcomes.values())


def test_unwritable_record_directory_serves_nothing(workdir):
    make_signed_bundle(workdir)
    (workdir / "not-a-directory").write_text("a file where the record directory should be")
    with CaptureUpstream() as up:
        config = base_config(workdir, up.model_toml(), records="not-a-directory/records")
        gw = Gateway(workdir, config).start(ready=False)
        try:
            ready = httpx.get(f"{gw.url}/readyz")
            assert ready.status_code == 503
            assert "not-a-directory" in ready.json()["records"]
            for model in ["captured", "claude-opus"]:
                r = httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(model=model),
                               headers={"authorization": f"Bearer {ALICE_KEY}"})
                assert r.status_code == 503
                assert r.json()["error"]["message"] == "the decision could not be recorded"
                assert "choices" not in r.text
                # No record carries a decision id, so none is handed out.
                assert "x-cairn-decision-id" not in r.headers
            r = httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(model="captured", stream=True),
                           headers={"authorization": f"Bearer {ALICE_KEY}"})
            assert r.status_code == 503 and "data:" not in r.text
            # The prompt of an unrecorded request never left the gateway.
            assert up.requests == []

            # The directory becomes usable: the gateway notices on its own, with no traffic (a
            # load balancer sends none to a replica that is not ready).
            (workdir / "not-a-directory").unlink()
            (workdir / "not-a-directory").mkdir()
            deadline = time.time() + 10
            while httpx.get(f"{gw.url}/readyz").status_code != 200:
                assert time.time() < deadline, httpx.get(f"{gw.url}/readyz").text
                time.sleep(0.2)
            r = httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(model="captured"),
                           headers={"authorization": f"Bearer {ALICE_KEY}"})
            assert r.status_code == 200 and len(up.requests) == 1
            decision_id = r.headers["x-cairn-decision-id"]
        finally:
            gw.stop()
    records = list((workdir / "not-a-directory" / "records").glob("segment-*.jsonl"))
    assert records and decision_id in "".join(p.read_text() for p in records)


def test_traceparent_reaches_the_upstream_and_sigterm_drains_in_flight_requests(workdir):
    """The caller's trace continues to the provider; on SIGTERM a request in flight still gets
    its answer, its decision and outcome records are written, and the segment is sealed."""
    make_signed_bundle(workdir)
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with CaptureUpstream() as up:
        slow = """
[providers.mock]
latency_ms = 1500

[[models]]
id = "claude-haiku"
provider = "mock"
region = "us-east-1"
max_data_level = 1
cost_tier = "low"
"""
        gw = Gateway(workdir, base_config(workdir, up.model_toml() + slow)).start()
        r = httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(model="captured"),
                       headers={"authorization": f"Bearer {ALICE_KEY}",
                                "traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
        assert r.status_code == 200
        sent = up.headers[-1]["traceparent"]
        assert sent.startswith(f"00-{trace}-") and sent.split("-")[2] != "00f067aa0ba902b7"

        answers = []
        t = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{gw.base_url}/chat/completions", json=chat_body(model="claude-haiku"),
            headers={"authorization": f"Bearer {ALICE_KEY}"}, timeout=30)))
        t.start()
        time.sleep(0.5)  # the mock answers after 1.5 s: the request is in flight
        code = gw.stop()
        t.join()
    assert code == 0
    assert answers and answers[0].status_code == 200, answers
    decision_id = answers[0].headers["x-cairn-decision-id"]
    recs = gw.records()
    assert any(x["kind"] == "decision" and x["id"] == decision_id for x in recs)
    assert any(x["kind"] == "outcome" and x.get("decision_id") == decision_id and x["status"] == 200 for x in recs)
    assert recs[-1]["kind"] == "seal"
    run(["audit", "verify", "records", "--pubkey", "keys/signing.pub", "--require-sealed"], cwd=workdir)
