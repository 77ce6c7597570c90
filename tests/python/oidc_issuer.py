"""A real OIDC issuer for tests: keys generated here, the discovery document and the JWKS
served over HTTP, tokens signed with PyJWT. Keys can be added mid-run (rotation)."""

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives import serialization


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(n: int) -> str:
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Issuer:
    def __init__(self):
        self.keys = {}  # kid -> (alg, private key)
        self.uses = {}  # kid -> the JWK's `use` when not "sig"
        self.announced_issuer = None  # the discovery document's `issuer`, when not this one
        self.jwks_fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.announced_issuer or issuer.url, "jwks_uri": issuer.url + "/jwks.json"}
                elif self.path == "/jwks.json":
                    issuer.jwks_fetches += 1
                    body = issuer.jwks()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()

    def add_key(self, kid: str, alg: str):
        if alg == "RS256":
            k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            k = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            k = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)
        self.keys[kid] = (alg, k)
        return k

    def public_pem(self, kid: str) -> bytes:
        return self.keys[kid][1].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwks(self):
        out = []
        for kid, (alg, k) in self.keys.items():
            pub = k.public_key()
            if alg == "RS256":
                n = pub.public_numbers()
                out.append({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": _int_b64(n.n), "e": _int_b64(n.e)})
            elif alg == "ES256":
                n = pub.public_numbers()
                out.append({"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256",
                            "x": b64u(n.x.to_bytes(32, "big")), "y": b64u(n.y.to_bytes(32, "big"))})
            else:
                raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                out.append({"kty": "OKP", "kid": kid, "use": "sig", "crv": "Ed25519", "x": b64u(raw)})
        for jwk in out:
            jwk["use"] = self.uses.get(jwk["kid"], "sig")
        return {"keys": out}

    def claims(self, sub="alice", **over):
        now = int(time.time())
        c = {"iss": self.url, "aud": "cairn", "sub": sub, "iat": now, "nbf": now - 5, "exp": now + 600,
             "groups": ["engineering"], "department": "engineering", "clearance": "confidential"}
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def token(self, kid="rsa1", **claims):
        alg, key = self.keys[kid]
        return jwt.encode(self.claims(**claims), key, algorithm=alg, headers={"kid": kid})


def unsigned_token(payload: dict, header: dict) -> str:
    return f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(payload).encode())}."
