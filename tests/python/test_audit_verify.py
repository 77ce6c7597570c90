"""`cairn audit verify` on records a real gateway wrote, then tampered with by hand."""

import re
import shutil

import httpx
import pytest

from conftest import run
from gateway_harness import ALICE_KEY, Gateway, base_config, chat_body, make_signed_bundle


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
    assert "not among the given keys" in r.stderr
