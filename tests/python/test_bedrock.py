"""Amazon Bedrock behind the gateway, against a fake Bedrock Runtime that speaks the real wire
formats and checks SigV4 signatures against the credentials a real STS-compatible server (moto)
issued: the user's identity in AWS, Converse and ConverseStream through the OpenAI SDK, tool
calls, error mapping, routing with fallback and circuit breakers, and Bedrock Guardrails."""

import threading
import time

import httpx
import openai
import pytest
from openai import OpenAI

from fake_bedrock import FakeBedrock
from gateway_harness import ALICE_KEY, CI_KEY, Gateway, base_config, make_signed_bundle
from servers import moto
from sts_recorder import StsRecorder

ROLE = "arn:aws:iam::123456789012:role/cairn-bedrock"
BASE_KEY, BASE_SECRET = "AKIACAIRNBASE0000001", "cairn-base-secret-0123456789"
SONNET = "anthropic.claude-3-5-sonnet-20241022-v2:0"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
PROFILE = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
PROFILE_ARN = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{PROFILE}"

ENV = {
    "AWS_ACCESS_KEY_ID": BASE_KEY,
    "AWS_SECRET_ACCESS_KEY": BASE_SECRET,
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
}


def model(id, upstream, region="us-east-1", level=2, tier="standard", extra=""):
    return f"""
[[models]]
id = "{id}"
provider = "bedrock"
upstream_model = "{upstream}"
region = "{region}"
max_data_level = {level}
cost_tier = "{tier}"
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0
{extra}
"""


def bedrock_config(workdir, fake, sts, extra="", routing=""):
    return base_config(workdir, f"""
[providers.bedrock]
region = "us-east-1"
endpoint_url = "{fake.url}"
timeout_ms = 10000

[providers.bedrock.identity]
role_arn = "{ROLE}"
sts_endpoint_url = "{sts.url}"
sts_region = "us-east-1"

[routing]
backoff_base_ms = 5
{routing}
{model("sonnet", SONNET)}
{model("sonnet-west", SONNET, region="us-west-2")}
{model("sonnet-profile", PROFILE)}
{model("sonnet-arn", PROFILE_ARN)}
{model("sonnet-cache", "anthropic.claude-cache-v1:0")}
{model("sonnet-tokyo", SONNET, region="ap-northeast-1")}
{model("guarded", SONNET, extra='guardrail = { id = "gr-abc123", version = "2" }')}
{model("claude-haiku", HAIKU, level=1, tier="low")}
{extra}
""")


@pytest.fixture
def aws(workdir):
    make_signed_bundle(workdir)
    with moto(workdir) as moto_url, StsRecorder(moto_url, BASE_KEY, BASE_SECRET) as sts, \
            FakeBedrock({}) as fake:
        fake.secrets = sts.issued
        yield fake, sts


def start(workdir, fake, sts, **kw):
    return Gateway(workdir, bedrock_config(workdir, fake, sts, **kw), env=ENV).start()


def sdk(gw, key=ALICE_KEY):
    return OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)


def test_calls_carry_the_users_identity_into_aws(workdir, aws):
    fake, sts = aws
    gw = start(workdir, fake, sts)
    try:
        c = sdk(gw)
        raw = c.chat.completions.with_raw_response.create(
            model="sonnet", max_tokens=100, temperature=0.3, stop=["END"],
            messages=[{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "hello from alice"}])
        done = raw.parse()
        assert done.choices[0].message.content == f"Bedrock {SONNET} heard: hello from alice"
        assert done.choices[0].finish_reason == "stop"
        assert done.usage.prompt_tokens == 5 and done.usage.completion_tokens == 6
        # Streamed: the deltas and the final usage of the stream.
        text, usage = "", None
        for chunk in c.chat.completions.create(model="sonnet", stream=True, stream_options={"include_usage": True},
                                               messages=[{"role": "user", "content": "stream for alice"}]):
            usage = chunk.usage or usage
            text += "".join(ch.delta.content or "" for ch in chunk.choices)
        assert text == f"Bedrock {SONNET} heard: stream for alice"
        assert usage.prompt_tokens == 3 and usage.completion_tokens == 6
        # A second principal gets a session of its own; alice's is reused.
        r = httpx.post(f"{gw.url}/v1/chat/completions", headers={"authorization": f"Bearer {CI_KEY}"},
                       json={"model": "claude-haiku", "messages": [{"role": "user", "content": "ci"}]})
        assert r.status_code == 200, r.text
    finally:
        gw.stop()

    # moto issued the credentials; every Bedrock call was signed with the caller's.
    assumed = sts.assume_role_requests()
    assert len(assumed) == 2, [a["params"] for a in assumed]
    assert all(a["signature_ok"] and a["signed_by"] == BASE_KEY for a in assumed)
    alice = next(a for a in assumed if a["params"]["RoleSessionName"] == "cairn-alice")
    assert alice["params"]["RoleArn"] == ROLE
    assert alice["params"]["SourceIdentity"] == "alice"
    assert alice["tags"] == {"cairn-user": "alice", "cairn-team": "engineering", "cairn-clearance": "2"}
    assert alice["transitive"] == ["cairn-user", "cairn-team"]
    ci = next(a for a in assumed if a["params"]["RoleSessionName"] == "cairn-ci-bot")
    assert ci["tags"]["cairn-team"] == "platform"
    calls = fake.calls_to(SONNET) + fake.calls_to(HAIKU)
    assert [c["op"] for c in calls] == ["converse", "converse-stream", "converse"]
    assert [sts.sessions[c["access_key"]]["params"]["RoleSessionName"] for c in calls] == \
        ["cairn-alice", "cairn-alice", "cairn-ci-bot"]
    assert not fake.rejected
    body = calls[0]["body"]
    assert body["system"] == [{"text": "Be brief."}]
    assert body["inferenceConfig"] == {"maxTokens": 100, "temperature": pytest.approx(0.3), "stopSequences": ["END"]}

    decisions = [r for r in gw.records() if r["kind"] == "decision" and r["principal"] == 'User::"alice"']
    for d in decisions:
        assert d["extra"]["assumed_role_arn"] == alice["assumed_role_arn"] == \
            "arn:aws:sts::123456789012:assumed-role/cairn-bedrock/cairn-alice"
        assert d["extra"]["role_session_name"] == "cairn-alice"
        assert d["extra"]["source_identity"] == "alice"
    outs = [r for r in gw.records() if r["kind"] == "outcome"]
    assert all(o["provider"] == "bedrock" and o["status"] == 200 for o in outs)
    # Each outcome names Bedrock's request id (what CloudTrail records as requestID), streamed or not.
    assert [o["extra"]["upstream_request_id"] for o in outs] == [c["request_id"] for c in calls]


def test_a_signature_with_other_credentials_is_refused(workdir, aws):
    fake, sts = aws
    # Without a role, calls are signed with the gateway's own (base) credentials, which this
    # fake Bedrock does not accept: the fake really checks.
    cfg = bedrock_config(workdir, fake, sts).replace(f'role_arn = "{ROLE}"', 'role_arn = ""')
    gw = Gateway(workdir, cfg, env=ENV).start()
    try:
        with pytest.raises(openai.PermissionDeniedError):
            sdk(gw).chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "x"}])
    finally:
        gw.stop()
    assert fake.rejected and fake.rejected[0]["access_key"] == BASE_KEY
    assert fake.rejected[0]["why"] == "unknown access key"


def test_models_profiles_tools_cache_tokens_and_regions(workdir, aws):
    fake, sts = aws
    gw = start(workdir, fake, sts)
    try:
        c = sdk(gw)
        for name in ("sonnet-profile", "sonnet-arn", "sonnet-west"):
            c.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
        # Cache tokens: priced apart, reported the OpenAI way (part of prompt_tokens).
        cached = c.chat.completions.create(model="sonnet-cache", messages=[{"role": "user", "content": "hi"}])
        assert cached.usage.prompt_tokens_details.cached_tokens == 5
        assert cached.usage.prompt_tokens == 1 + 5 + 3
        # Tools: a call comes back in OpenAI's shape, its result goes back to Bedrock.
        tools = [{"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                                    "parameters": {"type": "object",
                                                                   "properties": {"city": {"type": "string"}}}}}]
        msgs = [{"role": "user", "content": "weather in Paris?"}]
        first = c.chat.completions.create(model="sonnet", messages=msgs, tools=tools, tool_choice="auto")
        call = first.choices[0].message.tool_calls[0]
        assert first.choices[0].finish_reason == "tool_calls"
        assert (call.id, call.function.name, call.function.arguments) == ("tooluse_1", "weather", '{"city":"Paris"}')
        msgs += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
        second = c.chat.completions.create(model="sonnet", messages=msgs, tools=tools)
        assert second.choices[0].message.content == "The tool said: sunny, 21C"
        # Streamed tool calls arrive as OpenAI tool-call deltas.
        args, name, finish = "", None, None
        for chunk in c.chat.completions.create(model="sonnet", messages=msgs[:1], tools=tools, stream=True):
            for ch in chunk.choices:
                for tc in ch.delta.tool_calls or []:
                    name = tc.function.name or name
                    args += tc.function.arguments or ""
                finish = ch.finish_reason or finish
        assert (name, args, finish) == ("weather", '{"city": "Paris"}', "tool_calls")
    finally:
        gw.stop()
    assert [c["model"] for c in fake.calls_to(PROFILE)] == [PROFILE]
    assert [c["model"] for c in fake.calls_to(PROFILE_ARN)] == [PROFILE_ARN]
    assert fake.calls_to(SONNET)[0]["region"] == "us-west-2"
    tool_body = [c for c in fake.calls_to(SONNET) if "toolConfig" in c["body"]][1]["body"]
    assert tool_body["messages"][1]["content"][0]["toolUse"]["input"] == {"city": "Paris"}
    assert tool_body["messages"][2]["content"][0]["toolResult"]["toolUseId"] == "tooluse_1"
    out = [r for r in gw.records() if r["kind"] == "outcome" and r["model"] == "sonnet-cache"][0]
    assert out["usage"] == {"input_tokens": 1, "output_tokens": 4, "cache_read_tokens": 5, "cache_write_tokens": 3}
    # 1 x 3.0 + 4 x 15.0 + 5 x 0.3 + 3 x 3.75 per million tokens
    assert out["cost_usd"] == pytest.approx((3.0 + 60 + 1.5 + 11.25) / 1e6)


@pytest.mark.parametrize("status,kind,sdk_error,code", [
    (429, "ThrottlingException", openai.RateLimitError, 429),
    (400, "ValidationException", openai.BadRequestError, 400),
    (403, "AccessDeniedException", openai.PermissionDeniedError, 403),
    (503, "ModelNotReadyException", openai.InternalServerError, 502),
    (500, "InternalServerException", openai.InternalServerError, 502),
])
def test_bedrock_errors_map_to_openai_errors(workdir, aws, status, kind, sdk_error, code):
    fake, sts = aws
    gw = start(workdir, fake, sts, routing="max_attempts = 1")
    try:
        fake.fail[SONNET] = [(status, kind)]
        with pytest.raises(sdk_error) as e:
            sdk(gw).chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "x"}])
        assert e.value.status_code == code
        assert kind in e.value.message
        if code == 429:
            assert int(e.value.response.headers["retry-after"]) >= 1
    finally:
        gw.stop()
    out = [r for r in gw.records() if r["kind"] == "outcome"][0]
    assert out["status"] == code and kind in out["error"]


def test_sts_failure_fails_closed(workdir, aws):
    fake, sts = aws
    sts.fail = True
    gw = start(workdir, fake, sts)
    try:
        with pytest.raises(openai.InternalServerError) as e:
            sdk(gw).chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "x"}])
        assert e.value.status_code == 503
    finally:
        gw.stop()
    assert not fake.calls, "no model call without the user's identity"
    out = [r for r in gw.records() if r["kind"] == "outcome"][0]
    assert out["reason"] == "identity_unavailable" and out["status"] == 503
    assert "AccessDenied" in out["error"] and "sts:TagSession" in out["error"]


def test_each_region_reaches_its_own_endpoint(workdir, aws):
    """PrivateLink endpoints are per Region: a model in us-west-2 goes to that Region's endpoint,
    signed for that Region, and the others to the default endpoint."""
    fake, sts = aws
    with FakeBedrock({}) as west:
        west.secrets = sts.issued
        extra = f'\n[providers.bedrock.endpoint_urls]\n"us-west-2" = "{west.url}"\n'
        cfg = bedrock_config(workdir, fake, sts).replace("[providers.bedrock.identity]",
                                                          extra + "\n[providers.bedrock.identity]", 1)
        gw = Gateway(workdir, cfg, env=ENV).start()
        try:
            c = sdk(gw)
            for name in ("sonnet-west", "sonnet"):
                c.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
        finally:
            gw.stop()
        assert [x["region"] for x in west.calls] == ["us-west-2"]
        assert [x["region"] for x in fake.calls] == ["us-east-1"]


def test_credentials_are_fetched_once_and_refreshed_ahead_of_expiry(workdir, aws):
    fake, sts = aws
    # Sessions of 900 s refreshed 899 s ahead: after a second, every use is inside the refresh
    # window, so the next request is served with the cached credentials while one background
    # refresh fetches new ones.
    cfg = bedrock_config(workdir, fake, sts).replace(
        'sts_region = "us-east-1"', 'sts_region = "us-east-1"\nsession_duration_s = 900\nrefresh_before_s = 899')
    gw = Gateway(workdir, cfg, env=ENV).start()
    try:
        answers = []

        def ask():
            r = httpx.post(f"{gw.url}/v1/chat/completions", headers={"authorization": f"Bearer {ALICE_KEY}"},
                           json={"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
            answers.append((r.status_code, r.text))
            assert r.status_code == 200, r.text

        # Eight concurrent first requests of one user: one AssumeRole, the others wait for it.
        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # (An assert inside a thread does not fail the test: check here.)
        assert [s for s, _ in answers] == [200] * 8, answers
        assert len(sts.assume_role_requests()) == 1
        first = fake.calls[-1]["token"]
        assert {c["token"] for c in fake.calls} == {first}
        time.sleep(1.2)
        ask()
        assert fake.calls[-1]["token"] == first, "served with the cached credentials"
        deadline = time.time() + 10
        while len(sts.assume_role_requests()) < 2 and time.time() < deadline:
            time.sleep(0.05)
        assert len(sts.assume_role_requests()) == 2, "one background refresh"
        # Once stored, the new credentials are used (the refresh may still be landing).
        for _ in range(50):
            ask()
            if fake.calls[-1]["token"] != first:
                break
            time.sleep(0.05)
        assert fake.calls[-1]["token"] != first, "then the new credentials"
        assert fake.calls[-1]["token"] == sts.assume_role_requests()[1]["issued_token"]
    finally:
        gw.stop()
