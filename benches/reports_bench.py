"""Driver of benches/reports.sh."""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CAIRN = os.environ["CAIRN_BIN"]
DAYS = 30
START = datetime(2026, 10, 1, tzinfo=timezone.utc)


def run(args, **kw):
    return subprocess.run([CAIRN, *args], check=True, capture_output=True, text=True, **kw)


def seed_lake(tmp: Path) -> Path:
    """Cairn's own demo: its records, the Stratus samples and the OTel sample, ingested."""
    run(["demo", "--dir", str(tmp / "demo")], cwd=tmp)
    return tmp / "demo" / "lake"


def read_table(lake: Path, table: str) -> pa.Table:
    files = sorted((lake / table).rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def replicate(seed: pa.Table, rows: int, time_col: str, key_cols, out: Path, table: str, rng_offset=0):
    """Writes `rows` rows made from `seed`, spread over DAYS days, with fresh keys."""
    per_day = rows // DAYS
    total = 0
    for day in range(DAYS):
        n = per_day if day < DAYS - 1 else rows - total
        reps = -(-n // seed.num_rows)
        t = pa.concat_tables([seed] * reps).slice(0, n)
        base = int((START + timedelta(days=day)).timestamp() * 1000)
        offsets = pa.array((i * 86_399_000 // max(n, 1) for i in range(n)), pa.int64())
        ts = pc.add(offsets, base).cast(pa.timestamp("ms", tz="UTC"))
        t = t.set_column(t.schema.get_field_index(time_col), time_col, ts)
        for k in key_cols:
            ids = pa.array([f"{rng_offset + total + i:012d}-{day:02d}" for i in range(n)])
            t = t.set_column(t.schema.get_field_index(k), k, ids)
        d = out / table / f"date={(START + timedelta(days=day)).date()}"
        d.mkdir(parents=True, exist_ok=True)
        t = t.sort_by(time_col)
        pq.write_table(t, d / f"part-bench-{day:02d}.parquet", compression="zstd", row_group_size=131072)
        total += n
    return total


def generate(ct_rows: int, decisions: int, data: Path) -> Path:
    lake = data / f"reports-lake-{ct_rows}-{decisions}"
    if (lake / "DONE").exists():
        return lake
    print(f"generating a lake of {ct_rows} CloudTrail rows and {decisions} decisions (once)...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        seed = seed_lake(Path(tmp))
        ct = read_table(seed, "cloudtrail")
        dec = read_table(seed, "decisions")
        out_ = read_table(seed, "outcomes")
        replicate(ct, ct_rows, "event_time", ["event_id"], lake, "cloudtrail")
        replicate(dec, decisions, "ts", ["id"], lake, "decisions")
        # Outcomes point at allowed decisions: rebuild decision_id from the same numbering.
        allowed = dec.filter(pc.equal(dec["decision"], "allow"))
        n_out = decisions * allowed.num_rows // max(dec.num_rows, 1)
        replicate(out_, n_out, "ts", ["id"], lake, "outcomes", rng_offset=10**9)
    (lake / "DONE").write_text("ok")
    return lake


DUCK_MACROS = """
CREATE MACRO json_extract_scalar(j, p) AS json_extract_string(j, p);
CREATE MACRO json_string_array(j) AS from_json(j, '["VARCHAR"]');
CREATE MACRO json_size(j, p) AS coalesce(json_array_length(j, p), len(json_keys(j, p)));
CREATE MACRO json_format(j) AS CAST(j AS VARCHAR);
CREATE MACRO regexp_like(s, p) AS regexp_matches(s, p);
"""


def duck(lake: Path):
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count() or 2}")
    con.execute(DUCK_MACROS)
    for t in ["cloudtrail", "decisions", "outcomes", "genai_spans", "bundles", "policies", "cloudtrail_files", "_quarantine"]:
        if any((lake / t).rglob("*.parquet")):
            con.execute(f"CREATE VIEW \"{t}\" AS SELECT * FROM read_parquet('{lake}/{t}/*/*.parquet', hive_partitioning = true, hive_types = {{'date': DATE}})")
    return con


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--ct-rows", type=int, default=10_000_000)
    a.add_argument("--decisions", type=int, default=1_000_000)
    a.add_argument("--data", default=str(Path.home() / ".cache" / "cairn" / "bench-data"))
    args = a.parse_args()
    lake = generate(args.ct_rows, args.decisions, Path(args.data))
    # The generator writes the files of the first layout; compact brings them to the current
    # one (and finds nothing to do on later runs).
    run(["ingest", "compact", "--lake", str(lake)])
    size = sum(f.stat().st_size for f in lake.rglob("*.parquet")) / 1e6
    print(f"lake: {lake} ({size:.0f} MB of Parquet); {os.cpu_count()} cores")
    shown = run(["report", "all", "--lake", str(lake), "--show-sql"]).stdout
    queries = re.findall(r"-- (\w+) / (\w+): [^\n]*\n(.*?);\n", shown, re.S)
    con = duck(lake)
    print(f"{'query':<44} {'cairn s':>9} {'duckdb s':>9} {'ratio':>7}")
    totals = {}
    for report in ["access", "denials", "spend", "reconcile", "detections"]:
        t0 = time.perf_counter()
        r = run(["report", report, "--lake", str(lake), "--format", "json", "--timings"])
        wall = time.perf_counter() - t0
        ours = {m[0]: float(m[1]) for m in re.findall(rf"timing {report}/(\w+): ([0-9.]+) s", r.stderr)}
        theirs_total = 0.0
        for rep, name, sql in queries:
            if rep != report:
                continue
            t1 = time.perf_counter()
            try:
                con.execute(sql).fetchall()
            except duckdb.CatalogException as e:
                # A table the generated lake has no files for (bundles, policies): DuckDB
                # cannot read an empty glob, so the query has no peer here.
                print(f"  {rep + '/' + name:<42} {ours.get(name, float('nan')):9.3f}   (no DuckDB peer: {str(e).splitlines()[0]})")
                continue
            theirs = time.perf_counter() - t1
            theirs_total += theirs
            print(f"  {rep + '/' + name:<42} {ours.get(name, float('nan')):9.3f} {theirs:9.3f} {ours.get(name, 0) / max(theirs, 1e-9):7.2f}")
        totals[report] = (sum(ours.values()), theirs_total, wall)
    print()
    for rep, (o, t, w) in totals.items():
        print(f"{rep:<12} cairn {o:7.2f} s (process wall {w:6.2f} s)  duckdb {t:7.2f} s  ratio {o / max(t, 1e-9):5.2f} (target <= 1.2)")
    # `cairn detect`: every built-in Sigma rule in one run (the `detections` rows above are the
    # same SQL, rule by rule, against DuckDB).
    t0 = time.perf_counter()
    r = run(["detect", "--lake", str(lake), "--format", "json"])
    wall = time.perf_counter() - t0
    doc = json.loads(r.stdout)
    sigma = [(rep, name, sql) for rep, name, sql in queries if rep == "detections" and name != "instance_credentials_outside_aws"]
    t1 = time.perf_counter()
    for _, _, sql in sigma:
        con.execute(sql).fetchall()
    duck_all = time.perf_counter() - t1
    print(f"cairn detect: {doc['rules_run']} rules, {doc['hits']} hits in {wall:.2f} s (process wall); "
          f"DuckDB the same {len(sigma)} rules {duck_all:.2f} s; ratio {wall / max(duck_all, 1e-9):.2f}")
    day = (START + timedelta(days=7)).date()
    r = run(["query", "--lake", str(lake), "--stats", f"SELECT event_name, count(*) FROM cloudtrail WHERE \"date\" = DATE '{day}' GROUP BY 1"])
    print(f"one-day query ({day}): {r.stderr.strip().splitlines()[-1]}")
    r = run(["query", "--lake", str(lake), "--stats", "SELECT event_name, count(*) FROM cloudtrail GROUP BY 1"])
    print(f"all-days query:          {r.stderr.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
