"""Real servers the tests start and stop: SeaweedFS (S3, checks SigV4 signatures), moto (STS,
Athena), Redis. Each picks free loopback ports and is stopped by its pid."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent
S3_ACCESS_KEY = "cairntestkey"
S3_SECRET_KEY = "cairntestsecret0123456789"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port(with_grpc=False) -> int:
    """A free port; with_grpc also needs port + 10000 free (SeaweedFS's gRPC convention)."""
    for _ in range(500):
        p = random.randint(20000, 45000)
        if port_free(p) and (not with_grpc or port_free(p + 10000)):
            return p
    raise RuntimeError("no free port")


def wait_http(url, ok=lambda r: True, timeout=60, proc=None, log=None):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {log.read_text() if log else ''}")
        try:
            r = httpx.get(url, timeout=2)
            if ok(r):
                return r
            last = r.status_code
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up: {last}; {log.read_text()[-2000:] if log else ''}")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def seaweedfs(workdir: Path):
    """`weed server` with S3 on loopback. Yields the S3 endpoint URL."""
    d = workdir / "seaweedfs"
    d.mkdir(parents=True, exist_ok=True)
    identities = d / "identities.json"
    identities.write_text(json.dumps({"identities": [{
        "name": "cairn",
        "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    master, volume, filer, s3 = (free_port(with_grpc=True) for _ in range(4))
    log = d / "weed.log"
    proc = subprocess.Popen(
        [str(VENV_BIN / "weed"), "server", f"-dir={d}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={master}", f"-volume.port={volume}", "-filer", f"-filer.port={filer}",
         "-s3", f"-s3.port={s3}", f"-s3.config={identities}", "-volume.max=10",
         "-master.volumeSizeLimitMB=64", "-volume.preStopSeconds=0", "-s3.port.iceberg=0"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=d,
    )
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        wait_http(endpoint, ok=lambda r: r.status_code in (403, 400), proc=proc, log=log, timeout=90)
        yield endpoint
    finally:
        stop(proc)


def s3_env(endpoint: str) -> dict:
    return {
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def s3_client(endpoint: str):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_ACCESS_KEY,
                        aws_secret_access_key=S3_SECRET_KEY, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}))


@contextmanager
def moto(workdir: Path):
    """`moto_server` (STS, Athena, ...). moto accepts any signature: never use it to test signing."""
    port = free_port()
    log = workdir / "moto.log"
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/moto-api/", proc=proc, log=log)
        yield url
    finally:
        stop(proc)


def start_redis(port: int, log: Path):
    """Debian's redis-server on `port` (loopback, no persistence); returns once it accepts."""
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=open(log, "a"), stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start: {log.read_text()[-2000:]}")


@contextmanager
def redis(workdir: Path):
    """Debian's redis-server on a free loopback port. Yields (port, process); a test that
    restarts it should put the new process in `holder["proc"]` via `restart_redis`."""
    port = free_port()
    log = workdir / "redis.log"
    holder = {"proc": start_redis(port, log), "port": port, "log": log}
    try:
        yield holder
    finally:
        stop(holder["proc"])


def restart_redis(holder):
    holder["proc"] = start_redis(holder["port"], holder["log"])


def redis_command(port: int, *args):
    """One command over RESP, the Redis wire protocol; returns the decoded reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        out = f"*{len(args)}\r\n".encode()
        for a in args:
            b = str(a).encode()
            out += f"${len(b)}\r\n".encode() + b + b"\r\n"
        s.sendall(out)
        f = s.makefile("rb")
        return _resp(f)


def _resp(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp(f) for _ in range(n)]
    raise RuntimeError(f"unexpected RESP reply {line!r}")
