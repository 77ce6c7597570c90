"""A local Bedrock Runtime for the tests. It speaks the real wire formats: Converse and
ApplyGuardrail as JSON, ConverseStream as the binary `application/vnd.amazon.eventstream` framing
(prelude, headers, payload, CRC32s), errors as `x-amzn-ErrorType` plus a JSON message. Every
request must carry a SigV4 signature that verifies, with botocore's signer, against credentials
the fake STS issued (see `sts_recorder.py`); anything else gets 403.

Behaviour is scripted per model id by the test: `fail[model] = [(status, error type), ...]`
answers the next requests with those errors; `break_after[model] = n` breaks a stream after n
deltas with an in-stream exception. Prompts containing `forbidden-topic` trip the guardrail on
input; prompts asking to `reveal` get an answer containing it (the guardrail trips on output)."""

import json
import re
import struct
import threading
import time
import urllib.parse
import uuid
import zlib
from background import BackgroundServer, QuietHandler

import sigv4

TRIGGER = "forbidden-topic"


def frame(headers: dict, payload: bytes) -> bytes:
    """One event-stream message: total and header lengths, prelude CRC, headers (all strings,
    type 7), payload, message CRC."""
    h = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        h += struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(h) + len(payload) + 4
    prelude = struct.pack(">II", total, len(h))
    msg = prelude + struct.pack(">I", zlib.crc32(prelude)) + h + payload
    return msg + struct.pack(">I", zlib.crc32(msg))


def event(kind: str, body: dict) -> bytes:
    return frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                 json.dumps(body).encode())


def exception(kind: str, message: str) -> bytes:
    return frame({":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
                 json.dumps({"message": message}).encode())


def assessment():
    # The word policy's `match` is the blocked text: the gateway must never record it.
    return {"topicPolicy": {"topics": [{"name": "Forbidden topics", "type": "DENY", "action": "BLOCKED",
                                        "detected": True}]},
            "wordPolicy": {"customWords": [{"match": TRIGGER, "action": "BLOCKED", "detected": True}],
                           "managedWordLists": []}}


def texts(messages):
    out = []
    for m in messages:
        for block in m.get("content", []):
            if "text" in block:
                out.append((m["role"], block["text"]))
            if "toolResult" in block:
                for c in block["toolResult"].get("content", []):
                    if "text" in c:
                        out.append(("tool", c["text"]))
    return out


class FakeBedrock(BackgroundServer):
    def __init__(self, secrets: dict):
        self.secrets = secrets  # access key id -> (secret, session token), shared with the STS recorder
        self.calls = []
        self.rejected = []
        self.fail = {}
        self.break_after = {}
        self.lock = threading.Lock()
        fake = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def reply(self, status, body, headers=None):
                self.respond(status, json.dumps(body).encode(), "application/json", headers)

            def error(self, status, kind, message):
                self.reply(status, {"message": message}, {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                url = f"http://{self.headers['host']}{self.path}"
                ok, akid, why = sigv4.verify("POST", url, dict(self.headers.items()), body, fake.secrets)
                if not ok:
                    with fake.lock:
                        fake.rejected.append({"path": self.path, "access_key": akid, "why": why})
                    return self.error(403, "InvalidSignatureException", f"signature check failed: {why}")
                m = re.fullmatch(r"/model/([^/]+)/(converse|converse-stream)", self.path)
                g = re.fullmatch(r"/guardrail/([^/]+)/version/([^/]+)/apply", self.path)
                req = json.loads(body or b"{}")
                if g:
                    return self.apply_guardrail(urllib.parse.unquote(g[1]), req, akid)
                if not m:
                    return self.error(404, "UnknownOperationException", self.path)
                model, op = urllib.parse.unquote(m[1]), m[2]
                # Every answer carries its request id, as Bedrock's do (CloudTrail's requestID).
                self.request_id = str(uuid.uuid4())
                with fake.lock:
                    fake.calls.append({"op": op, "model": model, "access_key": akid, "request_id": self.request_id,
                                       "token": self.headers.get("x-amz-security-token"),
                                       "region": sigv4.parse_authorization(self.headers["authorization"])["region"],
                                       "body": req})
                    script = fake.fail.get(model) or []
                    failure = script.pop(0) if script else None
                if failure:
                    status, kind = failure
                    return self.error(status, kind, f"scripted {kind}")
                if op == "converse":
                    return self.reply(200, fake.converse(model, req), {"x-amzn-RequestId": self.request_id})
                return self.stream(model, req)

            def apply_guardrail(self, gid, req, akid):
                with fake.lock:
                    fake.calls.append({"op": "apply_guardrail", "model": gid, "access_key": akid, "body": req})
                text = " ".join(c.get("text", {}).get("text", "") for c in req.get("content", []))
                usage = {"topicPolicyUnits": 1, "contentPolicyUnits": 0, "wordPolicyUnits": 1,
                         "sensitiveInformationPolicyUnits": 0, "sensitiveInformationPolicyFreeUnits": 0,
                         "contextualGroundingPolicyUnits": 0}
                if TRIGGER in text:
                    return self.reply(200, {"action": "GUARDRAIL_INTERVENED", "actionReason": "Guardrail blocked.",
                                            "outputs": [{"text": "Sorry, the guardrail blocked this prompt."}],
                                            "assessments": [assessment()], "usage": usage})
                return self.reply(200, {"action": "NONE", "outputs": [], "assessments": [], "usage": usage})

            def stream(self, model, req):
                fake_answer = fake.answer(model, req)
                self.send_response(200)
                self.send_header("content-type", "application/vnd.amazon.eventstream")
                self.send_header("x-amzn-RequestId", self.request_id)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()

                def send(data):
                    self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
                    self.wfile.flush()

                send(event("messageStart", {"role": "assistant"}))
                stop, usage = fake_answer["stop"], fake_answer["usage"]
                words = fake_answer["text"].split(" ") if fake_answer["text"] else []
                guard = req.get("guardrailConfig")
                trace = None
                limit = fake.break_after.get(model)
                for i, w in enumerate(words):
                    if limit is not None and i == limit:
                        send(exception("modelStreamErrorException", "the model stream broke"))
                        send(b"")
                        return
                    if guard and TRIGGER in w:
                        send(event("contentBlockDelta", {"contentBlockIndex": 0,
                                                         "delta": {"text": "Sorry, the guardrail blocked the answer."}}))
                        stop = "guardrail_intervened"
                        trace = {"guardrail": {"outputAssessments": {guard["guardrailIdentifier"]: [assessment()]}}}
                        break
                    send(event("contentBlockDelta", {"contentBlockIndex": 0,
                                                     "delta": {"text": w + (" " if i + 1 < len(words) else "")}}))
                    time.sleep(0.002)
                if words:
                    send(event("contentBlockStop", {"contentBlockIndex": 0}))
                for j, call in enumerate(fake_answer["tools"]):
                    idx = j + 1
                    send(event("contentBlockStart", {"contentBlockIndex": idx, "start": {"toolUse": {
                        "toolUseId": call["toolUseId"], "name": call["name"]}}}))
                    args = json.dumps(call["input"])
                    for part in (args[: len(args) // 2], args[len(args) // 2:]):
                        send(event("contentBlockDelta", {"contentBlockIndex": idx, "delta": {"toolUse": {"input": part}}}))
                    send(event("contentBlockStop", {"contentBlockIndex": idx}))
                send(event("messageStop", {"stopReason": stop}))
                meta = {"usage": usage, "metrics": {"latencyMs": 3}}
                if trace:
                    meta["trace"] = trace
                send(event("metadata", meta))
                send(b"")

        self.serve(Handler)


    def answer(self, model, req):
        """What the model says: text or tool calls, stop reason, usage."""
        msgs = texts(req.get("messages", []))
        last_role, last = msgs[-1] if msgs else ("user", "")
        tools = [t["toolSpec"] for t in req.get("toolConfig", {}).get("tools", [])]
        calls = []
        if last_role == "tool":
            text, stop = f"The tool said: {last}", "end_turn"
        elif tools:
            text, stop = "", "tool_use"
            calls = [{"toolUseId": "tooluse_1", "name": tools[0]["name"], "input": {"city": "Paris"}}]
        elif "reveal" in last:
            text, stop = f"The answer mentions {TRIGGER} openly", "end_turn"
        else:
            text, stop = f"Bedrock {model} heard: {last}", "end_turn"
        system = " ".join(s.get("text", "") for s in req.get("system", []))
        words_in = sum(len(t.split()) for _, t in msgs) + len(system.split())
        usage = {"inputTokens": words_in, "outputTokens": len(text.split()) + 3 * len(calls),
                 "totalTokens": 0}
        if "cache" in model:
            usage.update({"cacheReadInputTokens": 5, "cacheWriteInputTokens": 3})
        usage["totalTokens"] = usage["inputTokens"] + usage["outputTokens"]
        return {"text": text, "stop": stop, "usage": usage, "tools": calls}

    def converse(self, model, req):
        a = self.answer(model, req)
        guard = req.get("guardrailConfig")
        trace = None
        text, stop = a["text"], a["stop"]
        if guard and any(TRIGGER in t for role, t in texts(req.get("messages", [])) if role != "assistant"):
            text, stop = "Sorry, the guardrail blocked this prompt.", "guardrail_intervened"
            trace = {"guardrail": {"inputAssessment": {guard["guardrailIdentifier"]: assessment()}}}
        elif guard and TRIGGER in text:
            text, stop = "Sorry, the guardrail blocked the answer.", "guardrail_intervened"
            trace = {"guardrail": {"outputAssessments": {guard["guardrailIdentifier"]: [assessment()]}}}
        content = [{"text": text}] if text else []
        content += [{"toolUse": c} for c in a["tools"]]
        out = {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
               "usage": a["usage"], "metrics": {"latencyMs": 3}}
        if trace:
            out["trace"] = trace
        return out

    def calls_to(self, model, op=None):
        with self.lock:
            return [c for c in self.calls if c["model"] == model and (op is None or c["op"] == op)]
