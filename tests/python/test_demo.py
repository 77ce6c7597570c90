"""`cairn demo` from an empty directory (embedded defaults: no policies, keys or config on disk)
runs the whole chain and shows each of its steps, the agent's MCP loop included."""

from conftest import run


def test_the_demo_runs_the_chain_on_embedded_defaults(tmp_path):
    out = run(["demo", "--dir", "demo"], cwd=tmp_path, timeout=300).stdout
    lines = out.splitlines()

    def line(prefix):
        found = [ln for ln in lines if ln.strip().startswith(prefix)]
        assert found, f"no line starting with {prefix!r} in:\n{out}"
        return found[0]

    # The agent's loop: listed-but-filtered, allowed, denied by policy, blocked for a secret.
    assert "notes__delete_note filtered out" in line("tools/list")
    assert "answered with a tool call: notes__search_notes" in line("model call with tools")
    assert "allowed" in line("tools/call notes__search_notes")
    assert "refused (-32010)" in line("tools/call notes__delete_note")
    assert "refused (-32010)" in line("tools/call notes__write_file")
    assert "no-secrets-in-tool-arguments" in line("tools/call notes__write_file")
    # Resources and prompts through the same controls.
    assert "private/oncall.md filtered out" in line("resources/list")
    assert "refused (-32010)" in line("resources/read cairn://notes/note:///private/oncall.md")
    assert "allowed: 2 messages, linking cairn://notes/note:///roadmap.md" in line("prompts/get")
    # The records verify and the reports, tools included, are written.
    assert (tmp_path / "demo" / "records").is_dir()
    assert any("tools" in ln and "report" in ln.lower() for ln in lines), out
    # The evidence chain: the simulated trail's digests verify, its two Bedrock calls match the
    # gateway's decisions by request id, the sample's call bypassed it, and each call leads to
    # its determining policy and the bundle that held it.
    assert "2 digests verified, 2 logs verified" in line("simulated CloudTrail checked"), out
    assert "3 Bedrock call(s) in CloudTrail, 2 matched" in line("reconcile:") and "1 bypassed" in line("reconcile:")
    assert "none was removed from the end" in line("the signed checkpoint")
    import json
    rep = json.loads(run(["report", "reconcile", "--lake", "demo/lake", "--format", "json"], cwd=tmp_path).stdout)
    sections = {k: v["rows"] for k, v in rep["reports"][0]["sections"].items()}
    assert {r["matched_by"] for r in sections["matched"]} == {"request id"}
    prov = sections["provenance"]
    assert len(prov) == 2 and all(r["policy_id"] == "users-invoke-models" and r["policy_text"] for r in prov), prov
    assert all(r["source_commit"] != "(bundle not in the lake)" for r in prov), prov
    assert sections["bundles_missing"] == []
    # Detections are Sigma rules: the demo names the SigmaHQ ids that fired, and `cairn detect`
    # on the demo's lake reports them with their authors.
    assert "[59b70e4d-dd17-44a9-b740-acf07ae3eb6a]" in line("detections with hits"), out
    det = json.loads(run(["detect", "--lake", "demo/lake", "--format", "json"], cwd=tmp_path).stdout)
    fired = {r["rule"]["id"]: r["rule"] for r in det["results"] if r["hits"]}
    assert {"4db60cc0-36fb-42b7-9b58-a5b53019fb74", "77caf516-34e5-4df9-b4db-20744fea0a60",
            "59b70e4d-dd17-44a9-b740-acf07ae3eb6a"} <= set(fired), sorted(fired)
    assert fired["59b70e4d-dd17-44a9-b740-acf07ae3eb6a"]["author"]
