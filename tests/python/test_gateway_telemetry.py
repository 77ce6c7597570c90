"""OpenTelemetry spans received by a real OTLP/HTTP receiver (decoded with `opentelemetry-proto`),
`/metrics` parsed by the Prometheus client's text-format parser, and the response cache."""

import json

import httpx
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from gateway_harness import ALICE_KEY, CI_KEY, Gateway, base_config, make_signed_bundle
from otlp_receiver import Receiver

SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP span kinds

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def config(workdir, otlp, capture=False, extra=""):
    return base_config(workdir, f"""
[telemetry]
otlp_endpoint = "{otlp.endpoint}"
batch_delay_ms = 50
capture_content = {"true" if capture else "false"}

[[limits.rules]]
name = "team-daily"
scope = "team"
usd_per_day = 50
{extra}
""")


def roots(spans):
    return [s for s in spans if s["kind"] == SERVER]


def test_genai_spans_with_children_and_traceparent(workdir):
    make_signed_bundle(workdir)
    with Receiver() as otlp:
        gw = Gateway(workdir, config(workdir, otlp)).start()
        c = OpenAI(base_url=gw.base_url, api_key=ALICE_KEY, max_retries=0,
                   default_headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"})
        raw = c.chat.completions.with_raw_response.create(
            model="claude-sonnet", max_tokens=10, temperature=0.5,
            messages=[{"role": "user", "content": "a secret plan about cairns"}])
        done = raw.parse()
        assert raw.headers["traceparent"].startswith(f"00-{TRACE_ID}-")
        gateway_span = raw.headers["traceparent"].split("-")[2]
        # A denied request and a failed authentication are spans too.
        denied = httpx.post(f"{gw.url}/v1/chat/completions", headers={"authorization": f"Bearer {CI_KEY}"},
                            json={"model": "claude-opus", "messages": [{"role": "user", "content": "x"}]})
        assert denied.status_code == 403
        # A stream.
        list(c.chat.completions.create(model="claude-sonnet", stream=True,
                                       messages=[{"role": "user", "content": "stream it"}]))
        spans = otlp.wait_for(lambda s: len(roots(s)) >= 3)
        gw.stop()

    mine = [s for s in spans if s["trace_id"] == TRACE_ID]
    root = next(s for s in mine if s["kind"] == SERVER and s["span_id"] == gateway_span)
    assert root["parent_span_id"] == PARENT
    assert root["name"] == "chat claude-sonnet"
    a = root["attrs"]
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "cairn.mock"
    assert a["gen_ai.request.model"] == "claude-sonnet"
    assert a["gen_ai.response.model"] == "claude-sonnet"
    assert a["gen_ai.usage.input_tokens"] == done.usage.prompt_tokens == 5
    assert a["gen_ai.usage.output_tokens"] == done.usage.completion_tokens == 10
    assert a["gen_ai.response.finish_reasons"] == ["length"]
    assert a["gen_ai.request.max_tokens"] == 10
    assert a["gen_ai.request.temperature"] == 0.5
    assert a["server.address"] == "127.0.0.1"
    assert a["cairn.decision_id"] == raw.headers["x-cairn-decision-id"]
    assert "error.type" not in a
    children = {s["name"]: s for s in mine if s["parent_span_id"] == gateway_span}
    assert set(children) == {"authenticate", "guardrails", "budget", "policy", "record", "chat claude-sonnet"}
    call = children["chat claude-sonnet"]
    assert call["kind"] == CLIENT and call["attrs"]["gen_ai.usage.output_tokens"] == 10
    assert children["policy"]["attrs"]["cairn.policy.reasons"] == ["users-invoke-models"]
    assert all(root["start"] <= s["start"] <= s["end"] <= root["end"] for s in children.values())
    assert otlp.resources[0]["service.name"] == "cairn-gateway"

    deny = next(s for s in roots(spans) if s["attrs"].get("cairn.decision") == "deny")
    assert deny["attrs"]["error.type"] == "policy" and deny["status"] == 2  # STATUS_CODE_ERROR
    assert deny["attrs"]["http.response.status_code"] == 403
    stream = next(s for s in roots(spans) if s["span_id"] != gateway_span and s["attrs"].get("cairn.decision") == "allow")
    assert stream["trace_id"] == TRACE_ID and stream["parent_span_id"] == PARENT
    assert stream["attrs"]["gen_ai.usage.output_tokens"] == 24
    assert stream["attrs"]["gen_ai.response.finish_reasons"] == ["stop"]
    # No prompt or completion text unless asked for.
    body = b"".join(otlp.bodies)
    assert b"secret plan" not in body and done.choices[0].message.content.encode() not in body
    assert not any("gen_ai.input.messages" in s["attrs"] for s in spans)


def test_content_is_captured_only_when_enabled(workdir):
    make_signed_bundle(workdir)
    with Receiver() as otlp:
        gw = Gateway(workdir, config(workdir, otlp, capture=True)).start()
        c = OpenAI(base_url=gw.base_url, api_key=ALICE_KEY, max_retries=0)
        done = c.chat.completions.create(model="claude-haiku",
                                         messages=[{"role": "user", "content": "a secret plan about cairns"}])
        spans = otlp.wait_for(lambda s: len(roots(s)) >= 1)
        gw.stop()
    a = roots(spans)[0]["attrs"]
    assert json.loads(a["gen_ai.input.messages"])[0]["content"] == "a secret plan about cairns"
    assert json.loads(a["gen_ai.output.messages"])[0]["content"] == done.choices[0].message.content


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(fams, name, **labels):
    out = []
    for f in fams.values():
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                out.append(s)
    return out


def test_metrics_parse_and_count_what_happened(workdir):
    make_signed_bundle(workdir)
    extra = """
[[limits.rules]]
name = "ci-rpm"
scope = "api_key"
value = "ci-bot"
requests_per_minute = 1

[[models]]
id = "claude-haiku"
region = "us-east-1"
max_data_level = 1
cost_tier = "low"
input_usd_per_mtok = 0.8
output_usd_per_mtok = 4.0
cache_ttl_s = 60

[[models]]
id = "claude-sonnet"
region = "us-west-2"
max_data_level = 2
cost_tier = "standard"
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0
"""
    with Receiver() as otlp:
        gw = Gateway(workdir, config(workdir, otlp, extra=extra)).start()
        c = OpenAI(base_url=gw.base_url, api_key=ALICE_KEY, max_retries=0)
        msg = [{"role": "user", "content": "cache me: reply to jane@example.com"}]
        first = c.chat.completions.with_raw_response.create(model="claude-haiku", messages=msg)
        second = c.chat.completions.with_raw_response.create(model="claude-haiku", messages=msg)
        assert "x-cairn-cache" not in first.headers
        assert second.headers["x-cairn-cache"] == "hit"
        assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
        # Another principal does not share alice's cache entry.
        ci = httpx.post(f"{gw.url}/v1/chat/completions", headers={"authorization": f"Bearer {CI_KEY}"},
                        json={"model": "claude-haiku", "messages": msg})
        assert ci.status_code == 200 and "x-cairn-cache" not in ci.headers
        limited = httpx.post(f"{gw.url}/v1/chat/completions", headers={"authorization": f"Bearer {CI_KEY}"},
                             json={"model": "claude-haiku", "messages": msg})
        assert limited.status_code == 429
        c.chat.completions.create(model="claude-sonnet", messages=[{"role": "user", "content": "hi"}])
        otlp.wait_for(lambda s: len(roots(s)) >= 5)
        fams = families(gw.metrics())
        gw.stop()

    assert samples(fams, "cairn_requests_total", decision="allow", model="claude-haiku", status="200",
                   reason="cache_hit")[0].value == 1
    assert samples(fams, "cairn_requests_total", decision="deny", status="429", reason="rate_limited")[0].value == 1
    assert samples(fams, "cairn_limit_rejections_total", rule="ci-rpm", metric="requests_per_minute")[0].value == 1
    assert samples(fams, "cairn_guardrail_findings_total", detector="email", direction="input",
                   action="redact")[0].value == 4
    assert samples(fams, "cairn_cache_lookups_total", result="hit")[0].value == 1
    assert samples(fams, "cairn_cache_lookups_total", result="miss")[0].value == 2
    stages = {s.labels["stage"] for s in samples(fams, "cairn_stage_duration_seconds_count")}
    assert {"authenticate", "guardrails", "budget", "policy", "cache", "record", "upstream", "total"} <= stages
    assert samples(fams, "cairn_tokens_total", model="claude-sonnet", kind="input")[0].value == 1
    assert samples(fams, "cairn_spend_micro_usd_total", model="claude-sonnet")[0].value > 0
    assert samples(fams, "cairn_bundle_info", )[0].value == 1
    assert samples(fams, "cairn_bundle_reloads_total", result="loaded")[0].value == 1
    assert samples(fams, "cairn_record_flush_duration_seconds_count")[0].value >= 1
    assert samples(fams, "cairn_spans_exported_total")[0].value >= 1

    outs = [r for r in gw.records() if r["kind"] == "outcome"]
    hit = next(o for o in outs if (o.get("extra") or {}).get("cache", {}) != "stored"
               and isinstance((o.get("extra") or {}).get("cache"), dict))
    assert hit["cost_usd"] == 0 and hit["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert hit["extra"]["cache"]["cached_usage"]["output_tokens"] > 0
    decisions = [r for r in gw.records() if r["kind"] == "decision" and r.get("model") == "claude-haiku"]
    assert [d.get("extra", {}).get("cache") for d in decisions[:3]] == ["miss", "hit", "miss"]


def test_a_policy_opts_in_to_the_cache(workdir):
    models = workdir / "policies" / "models.cedar"
    models.write_text(models.read_text().replace('@id("users-invoke-models")',
                                                 '@cache_ttl("60")\n@id("users-invoke-models")'))
    make_signed_bundle(workdir)
    gw = Gateway(workdir, base_config(workdir)).start()
    try:
        c = OpenAI(base_url=gw.base_url, api_key=ALICE_KEY, max_retries=0)
        msg = [{"role": "user", "content": "same question"}]
        heads = [c.chat.completions.with_raw_response.create(model="claude-sonnet", messages=msg).headers
                 for _ in range(2)]
        assert "x-cairn-cache" not in heads[0] and heads[1]["x-cairn-cache"] == "hit"
        # The same request streamed is served from the cache, as a stream.
        text = "".join(ch.delta.content or "" for chunk in c.chat.completions.create(
            model="claude-sonnet", messages=msg, stream=True) for ch in chunk.choices)
        assert text == c.chat.completions.create(model="claude-sonnet", messages=msg).choices[0].message.content
    finally:
        gw.stop()


def test_spans_written_as_otlp_json_join_their_decisions_in_the_lake(workdir):
    """The gateway's own spans, appended to a file as OTLP/JSON (the collector file exporter's
    format) while also sent over OTLP/HTTP, ingested with its decision records: each span's
    decision id joins the decision it belongs to."""
    import duckdb

    from conftest import run

    make_signed_bundle(workdir)
    with Receiver() as otlp:
        # The file key goes into the config's one [telemetry] table.
        cfg = config(workdir, otlp).replace("[telemetry]\n", f'[telemetry]\notlp_file = "{workdir / "spans.jsonl"}"\n', 1)
        gw = Gateway(workdir, cfg).start()
        c = OpenAI(base_url=gw.base_url, api_key=ALICE_KEY, max_retries=0)
        ids = set()
        for model in ["claude-sonnet", "claude-haiku"]:
            raw = c.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": "hello cairns"}])
            ids.add(raw.headers["x-cairn-decision-id"])
        denied = httpx.post(f"{gw.url}/v1/chat/completions", headers={"authorization": f"Bearer {CI_KEY}"},
                            json={"model": "claude-opus", "messages": [{"role": "user", "content": "x"}]})
        ids.add(denied.headers["x-cairn-decision-id"])
        otlp.wait_for(lambda s: len(roots(s)) >= 3)
        gw.stop()
    lines = (workdir / "spans.jsonl").read_text().splitlines()
    assert lines and all("resourceSpans" in json.loads(x) for x in lines)
    run(["ingest", "decisions", "records", "--pubkey", "keys/signing.pub", "--lake", "lake"], cwd=workdir)
    s = json.loads(run(["ingest", "otel", "spans.jsonl", "--lake", "lake", "--format", "json"], cwd=workdir).stdout)
    assert not any(x["quarantined"] for x in s["sources"]), s
    con = duckdb.connect()
    for t in ["decisions", "genai_spans"]:
        con.execute(f"create view {t} as select * from read_parquet('{workdir}/lake/{t}/*/*.parquet', hive_partitioning=true)")
    joined = con.execute("""
        select d.id, d.decision, s.name, s.gen_ai_request_model, s.gen_ai_operation_name
        from genai_spans s join decisions d on s.cairn_decision_id = d.id
        where s.kind = 'SERVER'""").fetchall()
    assert {r[0] for r in joined} == ids, joined
    assert {r[1] for r in joined} == {"allow", "deny"}
    assert all(r[2].startswith("chat ") and r[4] == "chat" for r in joined), joined
    # Child spans share the request's trace and point at its root.
    kinds = dict(con.execute("select kind, count(*) from genai_spans group by kind").fetchall())
    assert kinds.get("CLIENT", 0) >= 2 and kinds.get("INTERNAL", 0) >= 3, kinds
