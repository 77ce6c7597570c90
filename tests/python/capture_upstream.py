"""An OpenAI-compatible upstream that keeps every request body it receives, so a test can see
exactly what left the gateway (e.g. that a prompt was redacted)."""

import json
from background import BackgroundServer, QuietHandler


class CaptureUpstream(BackgroundServer):
    """Answers with `answer`, or, while `tool_call_args` is set, with one tool call whose arguments
    are those pieces (one stream chunk each)."""

    def __init__(self, answer="captured answer"):
        self.requests = []
        self.headers = []  # the headers of each request, lower-cased names
        self.answer = answer
        self.tool_call_args = None
        upstream = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                upstream.requests.append(body)
                upstream.headers.append({k.lower(): v for k, v in self.headers.items()})
                usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
                pieces = upstream.tool_call_args
                if pieces is not None:
                    out, ctype = tool_call_answer(body, pieces, usage)
                elif body.get("stream"):
                    events = [
                        {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "delta": {"role": "assistant", "content": upstream.answer},
                                      "finish_reason": None}]},
                        {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                        {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                         "choices": [], "usage": usage},
                    ]
                    out = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
                    ctype = "text/event-stream"
                else:
                    out = json.dumps({
                        "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": upstream.answer},
                                     "finish_reason": "stop"}],
                        "usage": usage,
                    })
                    ctype = "application/json"
                self.respond(200, out.encode(), ctype)

        self.serve(Handler)

    @property
    def base_url(self):
        return f"{self.url}/v1"

    def model_toml(self, model="captured"):
        """Gateway config: the `openai` provider pointed here, and a model served by it."""
        return f"""
[providers.openai]
base_url = "{self.base_url}"
timeout_ms = 5000

[[models]]
id = "{model}"
provider = "openai"
region = "us-east-1"
max_data_level = 3
cost_tier = "low"
"""


    def prompts(self):
        return [m.get("content") for r in self.requests for m in r["messages"]]


def tool_call_answer(body, pieces, usage):
    call = {"id": "call_1", "type": "function", "function": {"name": "send_mail", "arguments": "".join(pieces)}}
    if not body.get("stream"):
        return json.dumps({
            "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                         "finish_reason": "tool_calls"}],
            "usage": usage,
        }), "application/json"

    def chunk(delta, finish=None):
        return {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = []
    for i, piece in enumerate(pieces):
        tc = {"index": 0, "function": {"arguments": piece}}
        if i == 0:
            tc.update(id="call_1", type="function")
            tc["function"]["name"] = "send_mail"
        events.append(chunk({"tool_calls": [tc]}))
    events.append(chunk({}, "tool_calls"))
    events.append({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                   "choices": [], "usage": usage})
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n", "text/event-stream"
