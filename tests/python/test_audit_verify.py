"""`cairn audit verify` on records a real gateway wrote, then tampered with by hand."""

import json
import re
import shutil

import httpx
import pytest

from conftest import flat, run
from gateway_harness import ALICE_KEY, Gateway, base_config, chat_body, make_signed_bundle, refuses_service


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from conftest import REPO
    d = tmp_path_factory.mktemp("recorded")
    shutil.copytree(REPO / "policies", d / "policies")
    make_signed_bundle(d)
    gw = Gateway(d, base_config(d)).start()
    for i in range(6):
        httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(model=["claude-haiku", "claude-opus"][i % 2]),
                   headers={"authorization": f"Bearer {ALICE_KEY}"})
    gw.stop()
    return d


def tamper(recorded, tmp_path, edit):
    shutil.copytree(recorded / "records", tmp_path / "records")
    shutil.copytree(recorded / "keys", tmp_path / "keys")
    seg = sorted((tmp_path / "records").glob("segment-*.jsonl"))[0]
    lines = seg.read_text().splitlines(keepends=True)
    seg.write_text("".join(edit(lines)))
    return run(["audit", "verify", "records", "--pubkey", "keys/signing.pub"], cwd=tmp_path, check=False), seg.name


def test_untouched_records_verify(recorded):
    r = run(["audit", "verify", "records", "--pubkey", "keys/signing.pub", "--require-sealed"], cwd=recorded)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "(6 decisions, " in out, out


def earlier_year(line):
    """The record with its year one lower: a content change whatever today's date is."""
    altered = re.sub(r'"ts":"(\d{4})', lambda m: '"ts":"%04d' % (int(m.group(1)) - 1), line, count=1)
    assert altered != line
    return altered


@pytest.mark.parametrize("name,edit,line,words", [
    ("altered", lambda ls: ls[:2] + [earlier_year(ls[2])] + ls[3:], 3, "altered"),
    ("removed", lambda ls: ls[:3] + ls[4:], 4, "removed"),
    ("reordered", lambda ls: ls[:2] + [ls[3], ls[2]] + ls[4:], 3, "out of order"),
    ("inserted", lambda ls: ls[:4] + [ls[1]] + ls[4:], 5, "inserted"),
    ("truncated", lambda ls: ls[:-1] + [ls[-1][: len(ls[-1]) // 2]], None, "truncated"),
])
def test_each_kind_of_tampering_is_named(recorded, tmp_path, name, edit, line, words):
    r, seg = tamper(recorded, tmp_path, edit)
    assert r.returncode == 1, r.stdout + r.stderr
    first = r.stderr.split("first problem: ", 1)[1].splitlines()[0]
    assert seg in first
    if line:
        assert f"{seg}:{line} " in first, first
    assert words in first, first


def test_wrong_key_fails(recorded, tmp_path):
    run(["keys", "generate", "--out", "other"], cwd=tmp_path)
    r = run(["audit", "verify", str(recorded / "records"), "--pubkey", "other/signing.pub"], cwd=tmp_path, check=False)
    assert r.returncode == 1
    assert "not among the given keys" in flat(r.stderr)


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    """Records of a gateway that kept a checkpoint of its log outside the record directory."""
    from conftest import REPO
    d = tmp_path_factory.mktemp("checkpointed")
    shutil.copytree(REPO / "policies", d / "policies")
    make_signed_bundle(d)
    gw = Gateway(d, base_config(d), env={"CAIRN_RECORDS__CHECKPOINT_DIR": str(d / "checkpoints")}).start()
    for _ in range(4):
        httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(),
                   headers={"authorization": f"Bearer {ALICE_KEY}"})
    gw.stop()
    return d


def verify_against(d, records="records", checkpoints="checkpoints", extra=()):
    args = ["audit", "verify", records, "--pubkey", "keys/signing.pub", *extra]
    if checkpoints:
        args += ["--checkpoints", checkpoints]
    return run(args, cwd=d, check=False)


def newest_checkpoint(d):
    return sorted((d / "checkpoints").glob("checkpoint-*"))[-1]


def checkpoint_name(d, size):
    """`checkpoint-<key id>-<size>` of the records key under d/keys."""
    import base64
    import hashlib
    pem = (d / "keys" / "signing.pub").read_text()
    der = base64.b64decode("".join(l for l in pem.splitlines() if "-----" not in l))
    return f"checkpoint-{hashlib.sha256(der[-32:]).hexdigest()[:16]}-{size:020d}"


def test_the_checkpoint_covers_untouched_records(checkpointed):
    # One file per checkpoint, never replaced (a WORM store allows that), named by key and size.
    assert newest_checkpoint(checkpointed).name == checkpoint_name(checkpointed, 9)
    note = newest_checkpoint(checkpointed).read_text()
    lines = note.splitlines()
    # A C2SP checkpoint: origin, size, base64 hash, an extension line, a blank line, a signature.
    assert lines[0].startswith("cairn.decision-log/ed25519:") and lines[1] == "9", note
    assert lines[4] == "" and lines[5].startswith("\u2014 " + lines[0] + " "), note
    r = verify_against(checkpointed, extra=["--require-sealed"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(9 records, " in r.stdout and "nothing was removed from the end" in r.stdout, r.stdout


def test_records_removed_from_the_end_are_caught_only_against_a_checkpoint(checkpointed, tmp_path):
    shutil.copytree(checkpointed / "records", tmp_path / "records")
    shutil.copytree(checkpointed / "keys", tmp_path / "keys")
    shutil.copytree(checkpointed / "checkpoints", tmp_path / "checkpoints")
    seg = sorted((tmp_path / "records").glob("segment-*.jsonl"))[-1]
    lines = seg.read_text().splitlines(keepends=True)
    # The last decision, its outcome and the seal: what is left is a valid, shorter chain.
    seg.write_text("".join(lines[:-3]))
    alone = verify_against(tmp_path, checkpoints=None)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    caught = verify_against(tmp_path)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "records removed from the end" in caught.stderr and "seq 7..=9 are missing" in caught.stderr, caught.stderr
    as_json = json.loads(verify_against(tmp_path, extra=["--format", "json"]).stdout)
    assert as_json["ok"] is False and as_json["checkpoint"]["size"] == 9
    assert "seq 7..=9 are missing" in as_json["checkpoint"]["problem"]


def test_an_altered_or_foreign_checkpoint_is_not_trusted(checkpointed, tmp_path):
    shutil.copytree(checkpointed / "keys", tmp_path / "keys")
    note = newest_checkpoint(checkpointed).read_text()
    (tmp_path / "bigger").write_text(note.replace("\n9\n", "\n12\n", 1))
    r = verify_against(tmp_path, records=str(checkpointed / "records"), checkpoints="bigger")
    assert r.returncode == 1 and "cannot be trusted" in flat(r.stderr) and "altered" in flat(r.stderr), r.stderr
    run(["keys", "generate", "--out", "other"], cwd=tmp_path)
    r = run(["audit", "verify", str(checkpointed / "records"), "--pubkey", "other/signing.pub",
             "--checkpoints", str(checkpoints_file := newest_checkpoint(checkpointed))], cwd=tmp_path, check=False)
    assert r.returncode == 1 and "no signature by a given key" in flat(r.stderr), r.stderr
    # An older note copied under a larger name cannot pass for the newest.
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / checkpoint_name(checkpointed, 99)).write_text(checkpoints_file.read_text())
    r = verify_against(tmp_path, records=str(checkpointed / "records"), checkpoints="store")
    assert r.returncode == 1 and "holds the checkpoint of 9 records" in flat(r.stderr), r.stderr


def test_a_gateway_restarted_on_a_shortened_log_refuses_to_record(checkpointed, tmp_path):
    """Restarting on a cut log must not write a smaller checkpoint over the loss: the gateway
    refuses to record (and so to answer) until the records are restored."""
    for sub in ["records", "keys", "checkpoints", "policies"]:
        shutil.copytree(checkpointed / sub, tmp_path / sub)
    shutil.copy(checkpointed / "bundle.tar", tmp_path / "bundle.tar")
    seg = sorted((tmp_path / "records").glob("segment-*.jsonl"))[-1]
    seg.write_text("".join(seg.read_text().splitlines(keepends=True)[:-3]))
    err = refuses_service(
        Gateway(tmp_path, base_config(tmp_path), env={"CAIRN_RECORDS__CHECKPOINT_DIR": str(tmp_path / "checkpoints")}))
    assert "seq 7..=9 were removed" in err, err
    assert [p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*")] == [newest_checkpoint(checkpointed).name]


def test_a_checkpoint_directory_inside_the_records_is_refused(tmp_path):
    from conftest import REPO
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    make_signed_bundle(tmp_path)
    gw = Gateway(tmp_path, base_config(tmp_path), env={"CAIRN_RECORDS__CHECKPOINT_DIR": str(tmp_path / "records" / "cp")})
    with pytest.raises(AssertionError) as e:
        gw.start()
    assert "is inside `records.dir`" in str(e.value)


def test_checkpoints_kept_on_s3_catch_a_shortened_log(tmp_path):
    """The checkpoint store on S3 (SeaweedFS here; on AWS a bucket with Object Lock): each
    checkpoint a new object, never overwritten, read back by `audit verify` and at restart."""
    from conftest import REPO
    from servers import s3_client, s3_env, seaweedfs
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    make_signed_bundle(tmp_path)
    with seaweedfs(tmp_path) as endpoint:
        env = s3_env(endpoint)
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket="worm")
        gw_env = dict(env, CAIRN_RECORDS__CHECKPOINT_DIR="s3://worm/cairn/checkpoints")
        gw = Gateway(tmp_path, base_config(tmp_path), env=gw_env).start()
        for _ in range(2):
            httpx.post(f"{gw.base_url}/chat/completions", json=chat_body(),
                       headers={"authorization": f"Bearer {ALICE_KEY}"})
        gw.stop()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="worm")["Contents"]]
        assert keys == ["cairn/checkpoints/" + checkpoint_name(tmp_path, 5)], keys
        ok = run(["audit", "verify", "records", "--pubkey", "keys/signing.pub", "--checkpoints",
                  "s3://worm/cairn/checkpoints"], cwd=tmp_path, env=env, check=False)
        assert ok.returncode == 0 and "nothing was removed from the end" in ok.stdout, ok.stdout + ok.stderr
        seg = sorted((tmp_path / "records").glob("segment-*.jsonl"))[-1]
        seg.write_text("".join(seg.read_text().splitlines(keepends=True)[:-3]))
        cut = run(["audit", "verify", "records", "--pubkey", "keys/signing.pub", "--checkpoints",
                   "s3://worm/cairn/checkpoints"], cwd=tmp_path, env=env, check=False)
        assert cut.returncode == 1 and "seq 3..=5 are missing" in cut.stderr, cut.stderr
        # Restarted on the cut log, the gateway refuses to record rather than checkpoint the loss.
        err = refuses_service(Gateway(tmp_path, base_config(tmp_path), env=gw_env, name="gw2"))
        assert "seq 3..=5 were removed" in err, err
