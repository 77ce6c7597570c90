"""The conventions people expect of a CLI: shell completions a real shell accepts and uses, and
a manual page a real `man` renders."""

import shutil
import subprocess

import pytest

from conftest import run


def test_bash_completion_completes_commands_and_flags(tmp_path):
    script = tmp_path / "cairn.bash"
    script.write_text(run(["completions", "bash"], cwd=tmp_path).stdout)
    probe = f"""
source {script}
complete -p cairn
COMP_WORDS=(cairn gat); COMP_CWORD=1; _cairn cairn gat cairn; echo "commands: ${{COMPREPLY[*]}}"
COMP_WORDS=(cairn report --fr); COMP_CWORD=2; _cairn cairn --fr report; echo "flags: ${{COMPREPLY[*]}}"
"""
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "-F _cairn cairn" in out.stdout
    assert "commands: gateway" in out.stdout
    assert "--from" in out.stdout.split("flags:", 1)[1]


@pytest.mark.parametrize("shell", ["zsh", "fish", "powershell", "elvish"])
def test_every_shell_gets_a_script(tmp_path, shell):
    text = run(["completions", shell], cwd=tmp_path).stdout
    assert "cairn" in text and "gateway" in text and len(text) > 1000


def test_an_unknown_shell_is_a_usage_error(tmp_path):
    r = run(["completions", "tcsh"], cwd=tmp_path, check=False)
    assert r.returncode == 2 and "bash" in r.stderr


def test_the_manual_page_renders(tmp_path):
    page = run(["man"], cwd=tmp_path).stdout
    assert ".TH cairn" in page and "gateway" in page and "completions" in page
    if shutil.which("man") is None:
        pytest.skip("no man(1) on this machine to render the page")
    (tmp_path / "cairn.1").write_text(page)
    out = subprocess.run(["man", "-l", str(tmp_path / "cairn.1")], capture_output=True, text=True,
                         env={"MANPAGER": "cat", "PATH": "/usr/bin:/bin", "MANWIDTH": "80"}, timeout=30)
    assert out.returncode == 0 and "cairn" in out.stdout, out.stderr


def test_help_sets_global_options_apart_and_states_defaults_once(tmp_path):
    h = run(["ingest", "cloudtrail", "-h"], cwd=tmp_path).stdout
    own, global_ = h.split("Global options:", 1)
    assert "--log-level" in global_ and "--log-json" in global_
    assert "--log-level" not in own and "--lake" in own
    flat = " ".join(own.split())
    jobs = flat.split("--jobs", 1)[1].split("--", 1)[0]
    assert "[default: one per core]" in jobs and "[default: 0]" not in jobs, jobs
    rows = flat.split("--flush-rows", 1)[1].split("--", 1)[0]
    assert rows.count("default") == 1 and "[default: 131072]" in rows, rows
    mock = " ".join(run(["gateway", "mock-upstream", "-h"], cwd=tmp_path).stdout.split())
    assert "--listen <ADDR> Listen address" in mock and "--latency-ms <MS>" in mock
