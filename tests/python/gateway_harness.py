"""Starting the real `cairn gateway serve` for a test: a config file, port 0, the bound address
read from stdout, and a process killed on teardown."""

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from conftest import BIN, run

CI_KEY = "test-key-ci-bot-0123456789abcdef"
ALICE_KEY = "test-key-alice-0123456789abcdef"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_signed_bundle(workdir: Path, name="bundle.tar", keys="keys"):
    """Keys under workdir/keys and a bundle of workdir/policies."""
    if not (workdir / keys / "signing.key").exists():
        run(["keys", "generate", "--out", keys], cwd=workdir)
    run(["policy", "bundle", "--key", f"{keys}/signing.key", "--out", name], cwd=workdir)
    return workdir / name


def default_gateway(workdir: Path):
    """A started gateway over a bundle of workdir/policies with the base configuration."""
    make_signed_bundle(workdir)
    return Gateway(workdir, base_config(workdir)).start()


def base_config(workdir: Path, extra: str = "", records="records", bundle="bundle.tar") -> str:
    """A config with two API keys: a service account (ci-bot) and a user (alice)."""
    return f"""
[server]
listen = "127.0.0.1:0"
shutdown_grace_ms = 3000

[policy]
bundle = "{workdir / bundle}"
public_key = "{workdir / 'keys' / 'signing.pub'}"

[records]
dir = "{workdir / records}"
signing_key = "{workdir / 'keys' / 'signing.key'}"

[[auth.api_keys]]
id = "ci-bot"
sha256 = "{sha256(CI_KEY)}"
principal = 'ServiceAccount::"ci-bot"'
groups = ["platform"]
attributes = {{ owner_team = "platform", clearance = 1, allowed_models = [{{ type = "Model", id = "claude-haiku" }}] }}

[[auth.api_keys]]
id = "alice-key"
sha256 = "{sha256(ALICE_KEY)}"
principal = 'User::"alice"'
groups = ["engineering"]
attributes = {{ department = "engineering", clearance = 2 }}
{extra}
"""


class Gateway:
    def __init__(self, workdir: Path, config: str, name="gw", env=None, global_args=()):
        self.global_args = list(global_args)
        self.workdir = workdir
        self.name = name
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(config)
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        self.env = env or {}
        self.proc = None
        self.addr = None
        m = re.search(r'\[records\]\s*\ndir = "([^"]+)"', config)
        self.records_dir = Path(m.group(1)) if m else workdir / "records"

    def start(self, ready=True, timeout=30):
        env = dict(os.environ)
        env.update({"NO_COLOR": "1", "CAIRN_LOG": "info"})
        env.update(self.env)
        self.proc = subprocess.Popen(
            [BIN, *self.global_args, "gateway", "serve", "--config", str(self.config_path)],
            cwd=self.workdir,
            stdout=open(self.out, "w"),
            stderr=open(self.err, "w"),
            env=env,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.out.read_text() if self.out.exists() else ""
            for line in text.splitlines():
                if "listening on http://" in line:
                    self.addr = line.split("http://", 1)[1].strip()
            if self.addr:
                break
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited {self.proc.returncode}: {self.err.read_text()}")
            time.sleep(0.02)
        assert self.addr, f"gateway did not print its address: {self.err.read_text()}"
        if ready:
            self.wait_ready()
        return self

    @property
    def url(self):
        return f"http://{self.addr}"

    @property
    def base_url(self):
        return f"{self.url}/v1"

    def wait_ready(self, timeout=15):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                last = r.text
                if r.status_code == 200:
                    return
            except httpx.HTTPError as e:
                last = str(e)
            time.sleep(0.05)
        raise AssertionError(f"gateway not ready: {last}\n{self.err.read_text()}")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def records(self, records=None):
        """Every record line in the record directory (the configured one by default), parsed."""
        out = []
        d = self.workdir / records if records else self.records_dir
        for seg in sorted(d.glob("segment-*.jsonl")):
            for line in seg.read_text().splitlines():
                if line.strip():
                    out.append(json.loads(line))
        return out

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text


def kill9_under_load(gw, traffic, clients, seconds=2.0):
    """Runs `traffic(n, stop)` in `clients` threads, kills the gateway with SIGKILL after
    `seconds`, then stops and joins them."""
    import threading

    stop = threading.Event()
    threads = [threading.Thread(target=traffic, args=(n, stop)) for n in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    gw.kill9()
    stop.set()
    for t in threads:
        t.join()


def chat_body(model="claude-haiku", text="hello from the tests", **kw):
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    body.update(kw)
    return body


def refuses_service(gw) -> str:
    """Starts a gateway that must come up and refuse to serve: a chat request gets 503. Returns
    its stderr, which says why."""
    gw.start(ready=False)
    try:
        r = httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(),
                       headers={"authorization": f"Bearer {ALICE_KEY}"})
        assert r.status_code == 503, r.text
    finally:
        gw.stop()
    return gw.err.read_text()

