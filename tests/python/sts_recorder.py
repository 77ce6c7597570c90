"""In front of a real STS-compatible endpoint (moto_server): checks the SigV4 signature of each
STS request against the gateway's base credentials, forwards it to moto, and keeps what was asked
(role, session name, source identity, session tags, transitive keys) and the credentials moto
issued, so the fake Bedrock can verify signatures made with them. `fail = True` answers
AssumeRole with AccessDenied instead."""

import re
import threading
import urllib.parse
from background import BackgroundServer, QuietHandler

import httpx

import sigv4


def form_params(body: bytes) -> dict:
    return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}


def tags_of(params: dict) -> dict:
    tags, i = {}, 1
    while f"Tags.member.{i}.Key" in params:
        tags[params[f"Tags.member.{i}.Key"]] = params.get(f"Tags.member.{i}.Value", "")
        i += 1
    return tags


def member_list(params: dict, name: str) -> list:
    out, i = [], 1
    while f"{name}.member.{i}" in params:
        out.append(params[f"{name}.member.{i}"])
        i += 1
    return out


def xml_value(xml: str, tag: str):
    m = re.search(f"<{tag}>([^<]*)</{tag}>", xml)
    return m.group(1) if m else None


class StsRecorder(BackgroundServer):
    def __init__(self, moto_url: str, base_key: str, base_secret: str):
        self.moto_url = moto_url
        self.base = {base_key: (base_secret, None)}
        self.requests = []
        self.issued = {}  # access key id -> (secret, token): what the fake Bedrock accepts
        self.sessions = {}  # access key id -> the AssumeRole request that produced it
        self.fail = False
        self.lock = threading.Lock()
        rec = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def send(self, status, text, ctype="text/xml"):
                self.respond(status, text.encode(), ctype)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                url = f"http://{self.headers['host']}{self.path}"
                ok, akid, why = sigv4.verify("POST", url, dict(self.headers.items()), body, rec.base)
                params = form_params(body)
                entry = {"params": params, "signed_by": akid, "signature_ok": ok, "why": why,
                         "tags": tags_of(params), "transitive": member_list(params, "TransitiveTagKeys")}
                with rec.lock:
                    rec.requests.append(entry)
                if not ok:
                    return self.send(403, f"<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>"
                                          f"<Message>{why}</Message></Error><RequestId>1</RequestId></ErrorResponse>")
                if rec.fail:
                    return self.send(403, "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                                          "<Message>User is not authorized to perform: sts:TagSession</Message>"
                                          "</Error><RequestId>1</RequestId></ErrorResponse>")
                fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                r = httpx.post(rec.moto_url + self.path, content=body, headers=fwd, timeout=10)
                xml = r.text
                key = xml_value(xml, "AccessKeyId")
                if r.status_code == 200 and key:
                    with rec.lock:
                        rec.issued[key] = (xml_value(xml, "SecretAccessKey"), xml_value(xml, "SessionToken"))
                        entry["issued_key"] = key
                        entry["issued_token"] = xml_value(xml, "SessionToken")
                        entry["assumed_role_arn"] = xml_value(xml, "Arn")
                        rec.sessions[key] = entry
                self.send(r.status_code, xml, r.headers.get("content-type", "text/xml"))

        self.serve(Handler)


    def assume_role_requests(self):
        with self.lock:
            return [r for r in self.requests if r["params"].get("Action") == "AssumeRole"]
