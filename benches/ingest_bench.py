"""Driver of benches/ingest.sh: generate (once), run Cairn and DuckDB on the same files, compare."""

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import ct_fixtures as ct  # noqa: E402

CAIRN = os.environ["CAIRN_BIN"]

DUCKDB_JOB = """
import duckdb, sys
src, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET threads = {threads}")
ident = "STRUCT(type VARCHAR, principalId VARCHAR, arn VARCHAR, accountId VARCHAR, accessKeyId VARCHAR, userName VARCHAR, invokedBy VARCHAR, sessionContext JSON)"
rec = ("STRUCT(eventVersion VARCHAR, eventTime VARCHAR, eventSource VARCHAR, eventName VARCHAR, awsRegion VARCHAR, "
       "sourceIPAddress VARCHAR, userAgent VARCHAR, requestID VARCHAR, eventID VARCHAR, readOnly BOOLEAN, eventType VARCHAR, "
       "eventCategory VARCHAR, managementEvent BOOLEAN, recipientAccountId VARCHAR, errorCode VARCHAR, errorMessage VARCHAR, "
       "vpcEndpointId VARCHAR, tlsDetails JSON, userIdentity " + ident + ", requestParameters JSON, responseElements JSON, "
       "additionalEventData JSON, serviceEventDetails JSON, resources JSON)")
con.execute(f'''
COPY (
  WITH r AS (SELECT unnest(Records) AS e FROM read_json('{src}/**/*.json.gz', columns={{'Records': '{rec}[]'}}, format='unstructured', maximum_object_size=1000000000))
  SELECT strptime(e.eventTime, '%Y-%m-%dT%H:%M:%SZ') AS event_time, e.eventVersion AS event_version, e.eventSource AS event_source,
         e.eventName AS event_name, e.awsRegion AS aws_region, e.sourceIPAddress AS source_ip_address, e.userAgent AS user_agent,
         e.requestID AS request_id, e.eventID AS event_id, e.readOnly AS read_only, e.eventType AS event_type,
         e.eventCategory AS event_category, e.managementEvent AS management_event, e.recipientAccountId AS recipient_account_id,
         e.errorCode AS error_code, e.errorMessage AS error_message, e.vpcEndpointId AS vpc_endpoint_id,
         e.tlsDetails->>'tlsVersion' AS tls_version, e.tlsDetails->>'cipherSuite' AS tls_cipher_suite,
         e.userIdentity.type AS user_type, e.userIdentity.arn AS user_arn, e.userIdentity.accountId AS user_account_id,
         e.userIdentity.principalId AS user_principal_id, e.userIdentity.accessKeyId AS user_access_key_id,
         e.userIdentity.userName AS user_name, e.userIdentity.invokedBy AS user_invoked_by,
         e.userIdentity.sessionContext->>'$.sessionIssuer.arn' AS user_session_issuer_arn,
         e.userIdentity.sessionContext->>'$.sourceIdentity' AS user_source_identity,
         e.requestParameters::VARCHAR AS request_parameters, e.responseElements::VARCHAR AS response_elements,
         e.additionalEventData::VARCHAR AS additional_event_data, e.serviceEventDetails::VARCHAR AS service_event_details,
         e.resources::VARCHAR AS resources,
         strftime(strptime(e.eventTime, '%Y-%m-%dT%H:%M:%SZ'), '%Y-%m-%d') AS date
  FROM r ORDER BY event_time
) TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date))
''')
print(con.execute(f"select count(*) from read_parquet('{out}/*/*.parquet')").fetchone()[0])
"""


def generate(n: int, root: Path):
    marker = root / f"DONE-{n}"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    print(f"generating {n} records under {root} (once)...", file=sys.stderr)
    done = 0
    chunk = 50_000
    while done < n:
        k = min(chunk, n - done)
        recs = ct.bulk(k, seed=done + 1, days=7)
        for key, data in ct.delivery_layout(recs, per_file=250).items():
            p = root / key.replace(".json.gz", f"-{done}.json.gz")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        done += k
    marker.write_text(str(n))


def timed(cmd, **kw):
    """Runs cmd under /usr/bin/time; returns (seconds, peak RSS MiB, stdout)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {p.stderr[-3000:]}")
    rss_kb = int(p.stderr.strip().splitlines()[-1])
    return dt, rss_kb / 1024, p.stdout


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--records", type=int, default=1_000_000)
    a.add_argument("--data", default=str(Path.home() / ".cache" / "cairn" / "bench-data"))
    args = a.parse_args()
    data = Path(args.data) / f"cloudtrail-{args.records}"
    generate(args.records, data)
    files = list(data.rglob("*.json.gz"))
    gz_mb = sum(f.stat().st_size for f in files) / 1e6
    raw_mb = sum(len(gzip.decompress(f.read_bytes())) for f in files[:50]) / 50 * len(files) / 1e6
    threads = os.cpu_count() or 2
    print(f"input: {args.records} records in {len(files)} gzip files, {gz_mb:.0f} MB compressed, ~{raw_mb:.0f} MB JSON; {threads} cores")
    with tempfile.TemporaryDirectory() as tmp:
        t, rss, out = timed([CAIRN, "ingest", "cloudtrail", str(data), "--lake", f"{tmp}/lake", "--format", "json"])
        s = json.loads(out)
        written = sum(x["written"] for x in s["sources"])
        assert written == args.records, (written, args.records)
        job = Path(tmp) / "duck.py"
        job.write_text(DUCKDB_JOB.replace("{threads}", str(threads)))
        td, rssd, outd = timed([sys.executable, str(job), str(data), f"{tmp}/duck"])
        assert int(outd.strip()) == args.records
    print(f"cairn  : {args.records / t:10.0f} records/s {raw_mb / t:7.1f} MB/s (JSON) in {t:6.1f} s, peak RSS {rss:6.0f} MiB")
    print(f"duckdb : {args.records / td:10.0f} records/s {raw_mb / td:7.1f} MB/s (JSON) in {td:6.1f} s, peak RSS {rssd:6.0f} MiB")
    print(f"ratio  : cairn is {td / t:.2f}x DuckDB (target >= 3x; >= 250k records/s on 2 cores)")


if __name__ == "__main__":
    main()
