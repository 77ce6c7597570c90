"""Peers for the all-controls gateway benchmark: a real OIDC issuer (ES256 tokens, served JWKS)
and an OTLP/HTTP sink that decodes and counts spans. Writes `issuer=`, `token=` and `otlp=` lines
to the file named by argv[1], then serves until killed."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
from oidc_issuer import Issuer  # noqa: E402
from otlp_receiver import Receiver  # noqa: E402

issuer = Issuer()
issuer.add_key("es1", "ES256")
token = issuer.token(kid="es1", sub="bench", exp=int(time.time()) + 7200)
with Receiver() as otlp:
    Path(sys.argv[1]).write_text(f"issuer={issuer.url}\ntoken={token}\notlp={otlp.endpoint}\n")
    while True:
        time.sleep(5)
        with otlp.lock:
            n = len(otlp.spans)
            otlp.spans.clear()
        print(f"spans received: {n}", flush=True)
