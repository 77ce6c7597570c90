"""A real OIDC issuer for tests: keys generated here, the discovery document and the JWKS
served over HTTP, tokens signed with PyJWT. Keys can be added mid-run (rotation).

It is also an OAuth 2.1 authorization server for confidential clients: RFC 8414 metadata and a
token endpoint for `client_credentials` (the token's audience is the RFC 8707 `resource` asked
for) and RFC 8693 token exchange (a token for the `audience` asked for, in exchange for one this
issuer signed, with the exchanging client as `act`). Every token request is kept in
`token_requests`."""

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote_plus

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
        # client_id -> (secret, the `sub` of its client_credentials tokens)
        self.clients = {}
        self.token_requests = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.announced_issuer or issuer.url, "jwks_uri": issuer.url + "/jwks.json",
                            "token_endpoint": issuer.url + "/token"}
                elif self.path == "/.well-known/oauth-authorization-server":
                    body = issuer.as_metadata()
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

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                status, body = (404, {"error": "not_found"})
                if self.path == "/token":
                    status, body = issuer.token_endpoint(form, self.headers.get("authorization"))
                data = json.dumps(body).encode()
                self.send_response(status)
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

    def as_metadata(self):
        return {
            "issuer": self.url,
            "authorization_endpoint": self.url + "/authorize",
            "token_endpoint": self.url + "/token",
            "jwks_uri": self.url + "/jwks.json",
            "response_types_supported": ["code"],
            "grant_types_supported": ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }

    def _client(self, form, authorization):
        """The authenticated client id (client_secret_basic or client_secret_post), or None."""
        if authorization and authorization.lower().startswith("basic "):
            raw = base64.b64decode(authorization[6:]).decode()
            cid, _, secret = raw.partition(":")
            cid, secret = unquote_plus(cid), unquote_plus(secret)
        else:
            cid, secret = form.get("client_id"), form.get("client_secret")
        known = self.clients.get(cid)
        return cid if known and known[0] == secret else None

    def token_endpoint(self, form, authorization):
        self.token_requests.append(dict(form))
        cid = self._client(form, authorization)
        if cid is None:
            return 401, {"error": "invalid_client"}
        grant = form.get("grant_type")
        if grant == "client_credentials":
            token = self.token(sub=self.clients[cid][1], aud=form.get("resource") or "cairn")
            return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 600}
        if grant == "urn:ietf:params:oauth:grant-type:token-exchange":
            try:
                kid = jwt.get_unverified_header(form.get("subject_token", ""))["kid"]
                alg, key = self.keys[kid]
                subject = jwt.decode(form["subject_token"], key.public_key(), algorithms=[alg],
                                     options={"verify_aud": False})
            except Exception as e:  # noqa: BLE001  (any bad subject token is the client's error)
                return 400, {"error": "invalid_grant", "error_description": str(e)}
            token = self.token(sub=subject["sub"], aud=form.get("audience"), act={"sub": cid},
                               groups=subject.get("groups"))
            return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                         "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}
        return 400, {"error": "unsupported_grant_type"}

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
