"""Budgets and rate limits against the real gateway: two gateway processes sharing one Redis
under concurrent clients, Redis stopped and restarted mid-run, streamed usage reconciled, the
OpenAI SDK's view of a 429."""

import datetime
import threading
import time

import httpx
import openai
import pytest
from openai import OpenAI

from gateway_harness import ALICE_KEY, CI_KEY, Gateway, base_config, chat_body, make_signed_bundle
from conftest import run
from servers import redis, redis_command, restart_redis, stop

PROMPT = "tell me about cairns"  # 4 mock tokens in; 20 characters
SONNET_IN, SONNET_OUT = 3.0, 15.0  # USD per million tokens, the built-in catalogue's prices


def micro_usd(input_tokens, output_tokens):
    return input_tokens * SONNET_IN + output_tokens * SONNET_OUT  # per 1e6 tokens -> micro-USD


def limits_toml(port=None, rules="", on_error="closed"):
    backend = f'backend = "redis"\nredis_url = "redis://127.0.0.1:{port}/"' if port else 'backend = "memory"'
    return f"""
[limits]
{backend}
on_backend_error = "{on_error}"
{rules}
"""


def outcomes(*gateways):
    return [r for g in gateways for r in g.records() if r["kind"] == "outcome"]


def redis_sum(port, pattern):
    keys = redis_command(port, "KEYS", pattern)
    return sum(int(redis_command(port, "GET", k) or 0) for k in keys)


def team_daily(usd):
    """One rule: each team may spend `usd` a day."""
    return f'\n[[limits.rules]]\nname = "team-daily"\nscope = "team"\nusd_per_day = {usd}\n'


def wait_until(pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def away_from_minute_end():
    """Per-minute windows reset on the minute: start a short test well inside one."""
    if datetime.datetime.now(datetime.timezone.utc).second >= 55:
        time.sleep(61 - datetime.datetime.now(datetime.timezone.utc).second)


def test_two_gateways_share_one_budget_under_concurrency(workdir):
    make_signed_bundle(workdir)
    limit_usd = 0.05
    rules = team_daily(limit_usd)
    with redis(workdir) as r:
        port = r["port"]
        gws = [
            Gateway(workdir, base_config(workdir, limits_toml(port, rules), records=f"records{i}"),
                    name=f"gw{i}").start()
            for i in (1, 2)
        ]
        statuses, refusals, lock = [], [], threading.Lock()

        def client(gw):
            with httpx.Client(base_url=gw.url, timeout=30) as c:
                while True:
                    resp = c.post("/v1/chat/completions", json=chat_body("claude-sonnet", PROMPT, max_tokens=24),
                                  headers={"authorization": f"Bearer {ALICE_KEY}"})
                    with lock:
                        statuses.append(resp.status_code)
                    if resp.status_code == 429:
                        with lock:
                            refusals.append((resp.headers, resp.json()))
                        return
                    assert resp.status_code == 200, resp.text

        threads = [threading.Thread(target=client, args=(gws[i % 2],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        # Every client stopped at a 429, and nothing but 200 and 429 came back.
        assert not any(t.is_alive() for t in threads)
        assert set(statuses) <= {200, 429} and len(refusals) == len(threads), (set(statuses), len(refusals))

        # Each request reserves its worst case: 5 prompt tokens (20 chars / 4) + 24 completion.
        reservation = micro_usd(5, 24)
        limit = limit_usd * 1e6
        spent_by_key = wait_until(lambda: (lambda v: v if v and v <= limit else None)(
            redis_sum(port, "cairn:limit:team-daily:engineering:usd_per_day:*")), timeout=10)
        for g in gws:
            g.stop()
        outs = outcomes(*gws)
        spent = sum(round(o["cost_usd"] * 1e6) for o in outs)
        served = statuses.count(200)
        assert len(outs) == served and served > 100, (served, len(outs))
        assert all(o["usage"] == {"input_tokens": 4, "output_tokens": 24} for o in outs)
        # The shared budget held: no overspend beyond one reservation, and (the refused requests
        # needing one more reservation) it was used up to within two.
        assert spent <= limit + reservation, (spent, limit)
        assert spent > limit - 2 * reservation, (spent, limit)
        # Every reservation was reconciled to the actual cost, across both processes.
        assert spent_by_key == spent, (spent_by_key, spent)
        served_by = [sum(1 for o in outcomes(g)) for g in gws]
        assert all(n > 0 for n in served_by), served_by

        headers, body = refusals[0]
        assert int(headers["retry-after"]) > 0
        assert body["error"]["type"] == "insufficient_quota"
        assert body["error"]["code"] == "insufficient_quota"
        assert "team-daily" in body["error"]["message"]
        denied = [r for g in gws for r in g.records() if r["kind"] == "decision" and r.get("status") == 429]
        assert len(denied) == len(refusals) == 8
        for d in denied:
            assert d["reason"] == "budget_exceeded"
            assert d["extra"]["limit"]["rule"] == "team-daily"
            assert d["extra"]["limit"]["metric"] == "usd_per_day"
        allowed = [r for g in gws for r in g.records() if r["kind"] == "decision" and r.get("decision") == "allow"]
        assert all(a["extra"]["budget"]["limit_usd"] == limit_usd for a in allowed)
        assert all("budget_remaining_usd" in a["context"] for a in allowed)


def test_rate_limit_through_the_sdk(workdir):
    make_signed_bundle(workdir)
    rules = """
[[limits.rules]]
name = "per-user-rpm"
scope = "user"
requests_per_minute = 3
"""
    gw = Gateway(workdir, base_config(workdir, limits_toml(rules=rules))).start()
    try:
        away_from_minute_end()
        c = OpenAI(base_url=gw.base_url, api_key=ALICE_KEY, max_retries=0)
        for _ in range(3):
            c.chat.completions.create(model="claude-haiku", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(model="claude-haiku", messages=[{"role": "user", "content": "hi"}])
        assert 1 <= int(e.value.response.headers["retry-after"]) <= 60
        assert e.value.code == "rate_limit_exceeded"
        assert e.value.body["type"] == "requests"
        # Another user has a counter of their own.
        OpenAI(base_url=gw.base_url, api_key=CI_KEY, max_retries=0).chat.completions.create(
            model="claude-haiku", messages=[{"role": "user", "content": "hi"}])
        # A denied request gives its request slot back.
        with pytest.raises(openai.PermissionDeniedError):
            OpenAI(base_url=gw.base_url, api_key=CI_KEY, max_retries=0).chat.completions.create(
                model="claude-opus", messages=[{"role": "user", "content": "hi"}])
        for _ in range(2):
            OpenAI(base_url=gw.base_url, api_key=CI_KEY, max_retries=0).chat.completions.create(
                model="claude-haiku", messages=[{"role": "user", "content": "hi"}])
    finally:
        gw.stop()
    limited = [r for r in gw.records() if r.get("reason") == "rate_limited"]
    assert len(limited) == 1 and limited[0]["extra"]["limit"]["rule"] == "per-user-rpm"
    assert limited[0]["principal"] == 'User::"alice"'


def test_redis_stopped_mid_run_fails_closed_or_open_as_configured(workdir):
    make_signed_bundle(workdir)
    rules = team_daily(100)
    with redis(workdir) as r:
        closed = Gateway(workdir, base_config(workdir, limits_toml(r["port"], rules), records="rc"),
                         name="closed").start()
        opened = Gateway(workdir, base_config(workdir, limits_toml(r["port"], rules, "open"), records="ro"),
                         name="open").start()
        auth = {"authorization": f"Bearer {ALICE_KEY}"}
        body = chat_body("claude-sonnet", PROMPT)
        for g in (closed, opened):
            assert httpx.post(f"{g.url}/v1/chat/completions", json=body, headers=auth).status_code == 200

        stop(r["proc"])
        resp = httpx.post(f"{closed.url}/v1/chat/completions", json=body, headers=auth, timeout=10)
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["type"] == "service_unavailable"
        assert "budgets" in resp.json()["error"]["message"]
        ready = httpx.get(f"{closed.url}/readyz")
        assert ready.status_code == 503 and ready.json()["limits"] == "unavailable"
        resp = httpx.post(f"{opened.url}/v1/chat/completions", json=body, headers=auth, timeout=10)
        assert resp.status_code == 200, resp.text
        assert httpx.get(f"{opened.url}/readyz").status_code == 200
        assert 'cairn_limits_backend_errors_total{result="closed"} 1' in closed.metrics()
        assert 'cairn_limits_backend_errors_total{result="open"} 1' in opened.metrics()

        # Redis back: the closed gateway serves again without a restart.
        restart_redis(r)
        assert wait_until(lambda: httpx.post(f"{closed.url}/v1/chat/completions", json=body, headers=auth,
                                             timeout=10).status_code == 200, timeout=20)
        closed.stop()
        opened.stop()

    refused = [x for x in closed.records() if x.get("reason") == "limits_unavailable"]
    assert len(refused) >= 1
    assert refused[0]["status"] == 503 and refused[0]["decision"] == "deny"
    assert any("unavailable" in e for e in refused[0]["errors"])
    unchecked = [x for x in opened.records() if x.get("extra", {}).get("limits", {}).get("unchecked")]
    assert len(unchecked) == 1 and unchecked[0]["decision"] == "allow"


def test_redis_stopped_under_concurrent_load_fails_closed_and_records_every_request(workdir):
    """Clients keep sending while Redis stops and comes back: every answer is a 200 or a fail-
    closed 503, each has exactly one decision record with that status, and the chain verifies."""
    make_signed_bundle(workdir)
    rules = team_daily(100)
    with redis(workdir) as r:
        gw = Gateway(workdir, base_config(workdir, limits_toml(r["port"], rules))).start()
        answered, errors, stop_event, lock = [], [], threading.Event(), threading.Lock()

        def client():
            with httpx.Client(base_url=gw.url, timeout=15) as c:
                while not stop_event.is_set():
                    try:
                        resp = c.post("/v1/chat/completions", json=chat_body("claude-sonnet", PROMPT),
                                      headers={"authorization": f"Bearer {ALICE_KEY}"})
                        with lock:
                            answered.append((resp.status_code, resp.headers.get("x-cairn-decision-id"),
                                             time.time()))
                    except httpx.HTTPError as e:
                        with lock:
                            errors.append(repr(e))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        stopped_at = time.time()
        stop(r["proc"])
        time.sleep(1.5)
        restart_redis(r)
        restarted_at = time.time()
        assert wait_until(lambda: any(s == 200 and t > restarted_at for s, _, t in list(answered)), timeout=20)
        time.sleep(0.5)
        stop_event.set()
        for t in threads:
            t.join(timeout=30)
        gw.stop()

    assert not errors, errors[:3]
    statuses = {s for s, _, _ in answered}
    assert statuses <= {200, 503}, statuses
    assert any(s == 503 and t > stopped_at for s, _, t in answered), "no request failed closed"
    assert any(s == 200 and t < stopped_at for s, _, t in answered)
    decisions = {x["id"]: x for x in gw.records() if x["kind"] == "decision"}
    for status, decision_id, _ in answered:
        rec = decisions[decision_id]
        if status == 200:
            assert rec["decision"] == "allow"
        else:
            assert rec["status"] == 503 and rec["reason"] == "limits_unavailable", rec
    run(["audit", "verify", "records", "--pubkey", "keys/signing.pub", "--require-sealed"], cwd=workdir)


def test_streamed_usage_is_what_the_provider_reported_and_what_budgets_count(workdir):
    make_signed_bundle(workdir)
    rules = """
[[limits.rules]]
name = "user-tokens"
scope = "user"
tokens_per_minute = 1000000
usd_per_day = 100
"""
    broken = '\n[providers.mock]\nfail_after_chunks = 2\nchunk_words = 4\n'
    with redis(workdir) as r:
        port = r["port"]
        gw = Gateway(workdir, base_config(workdir, limits_toml(port, rules))).start()
        away_from_minute_end()
        c = OpenAI(base_url=gw.base_url, api_key=ALICE_KEY, max_retries=0)
        whole = c.chat.completions.create(model="claude-sonnet", messages=[{"role": "user", "content": PROMPT}])
        usage, text = None, ""
        for chunk in c.chat.completions.create(model="claude-sonnet", stream=True,
                                               stream_options={"include_usage": True},
                                               messages=[{"role": "user", "content": PROMPT}]):
            usage = chunk.usage or usage
            text += "".join(ch.delta.content or "" for ch in chunk.choices)
        # The mock counts words: what the stream reports is what the mock produced.
        assert usage.prompt_tokens == whole.usage.prompt_tokens == len(PROMPT.split())
        assert usage.completion_tokens == whole.usage.completion_tokens == len(text.split())
        expected_tokens = 2 * (usage.prompt_tokens + usage.completion_tokens)
        expected_usd = 2 * micro_usd(usage.prompt_tokens, usage.completion_tokens)
        assert wait_until(lambda: redis_sum(port, "cairn:limit:user-tokens:*:tokens_per_minute:*")
                          == expected_tokens), redis_sum(port, "cairn:limit:user-tokens:*:tokens_per_minute:*")
        assert redis_sum(port, "cairn:limit:user-tokens:*:usd_per_day:*") == expected_usd
        gw.stop()
        streamed = [o for o in outcomes(gw) if o.get("stream")]
        assert streamed[0]["usage"] == {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}
        assert "usage_estimated" not in (streamed[0].get("extra") or {})

        # A stream that breaks after two chunks still charges what it sent: estimated as the
        # reservation is (ASCII at four bytes a token, never fewer than the words).
        def est(t):
            return max(len(t.split()), -(-len(t.encode()) // 4))

        redis_command(port, "FLUSHALL")
        gw2 = Gateway(workdir, base_config(workdir, limits_toml(port, rules) + broken, records="r2"),
                      name="broken").start()
        got = ""
        with pytest.raises(Exception):
            for chunk in OpenAI(base_url=gw2.base_url, api_key=ALICE_KEY, max_retries=0).chat.completions.create(
                    model="claude-sonnet", stream=True, messages=[{"role": "user", "content": PROMPT}]):
                got += "".join(ch.delta.content or "" for ch in chunk.choices)
        assert len(got.split()) == 8
        want_in, want_out = est(PROMPT), est(got)
        assert want_in >= len(PROMPT.split()) and want_out >= 8
        charged = wait_until(lambda: redis_sum(port, "cairn:limit:user-tokens:*:usd_per_day:*")
                             == micro_usd(want_in, want_out))
        assert charged, redis_sum(port, "cairn:limit:user-tokens:*:usd_per_day:*")
        gw2.stop()
        out = outcomes(gw2)
        assert out[0]["usage"] == {"input_tokens": want_in, "output_tokens": want_out}
        assert out[0]["extra"]["usage_estimated"] is True
        assert out[0]["status"] == 502


def test_limit_configuration_errors_are_named(workdir):
    make_signed_bundle(workdir)
    bad = """
[limits]
backend = "redis"
on_backend_error = "sometimes"

[[limits.rules]]
name = "x"
scope = "galaxy"
"""
    gw = Gateway(workdir, base_config(workdir, bad))
    with pytest.raises(AssertionError):
        gw.start(timeout=10)
    err = gw.err.read_text()
    for needle in ("limits.redis_url", "limits.on_backend_error", "limits.rules[0].scope", "sets no limit"):
        assert needle in err, err
