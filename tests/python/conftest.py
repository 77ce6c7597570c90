"""Shared fixtures: the real cairn binary, a scratch directory with the repository's policies,
and helpers to run commands."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(os.environ.get("CAIRN_REPO", Path(__file__).resolve().parents[2]))
BIN = os.environ.get("CAIRN_BIN") or str(
    Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug" / "cairn"
)


def flat(text):
    """miette's wrapped lines as one: it wraps at 80 columns when not on a terminal, so where a
    message breaks depends on the length of the paths in it (a temp dir's, say)."""
    return re.sub(r"\s*\n\s*│?\s*", " ", text)


def run(args, cwd, check=True, env=None, timeout=120, input=None):
    full_env = dict(os.environ)
    full_env.update({"NO_COLOR": "1", "CI": "true"})
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [BIN, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        input=input,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"cairn {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def workdir(tmp_path):
    """A scratch directory holding a copy of the repository's policies/."""
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    return tmp_path
