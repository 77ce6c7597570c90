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
