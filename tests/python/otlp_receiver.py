"""A real OTLP/HTTP trace receiver for the tests: decodes what the gateway exports with the
`opentelemetry-proto` package (the protobuf definitions the collector uses) and keeps the spans
and the raw bodies."""

import threading
import time
from background import BackgroundServer, QuietHandler

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class Receiver(BackgroundServer):
    def __init__(self):
        self.spans = []
        self.bodies = []
        self.resources = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
                    self.send_response(415)
                    self.end_headers()
                    return
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                with receiver.lock:
                    receiver.bodies.append(body)
                    for rs in req.resource_spans:
                        receiver.resources.append({a.key: _value(a.value) for a in rs.resource.attributes})
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                receiver.spans.append({
                                    "name": s.name,
                                    "trace_id": s.trace_id.hex(),
                                    "span_id": s.span_id.hex(),
                                    "parent_span_id": s.parent_span_id.hex(),
                                    "kind": s.kind,
                                    "start": s.start_time_unix_nano,
                                    "end": s.end_time_unix_nano,
                                    "attrs": {a.key: _value(a.value) for a in s.attributes},
                                    "status": s.status.code,
                                    "status_message": s.status.message,
                                    "scope": ss.scope.name,
                                })
                self.respond(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

        self.serve(Handler)

    @property
    def endpoint(self):
        return self.url


    def wait_for(self, pred, timeout=15):
        """The spans once `pred(spans)` holds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                spans = list(self.spans)
            if pred(spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(f"spans never matched; got {[s['name'] for s in spans]}")

    def trace(self, trace_id):
        with self.lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]
