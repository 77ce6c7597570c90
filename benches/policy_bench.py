"""Policy proof benchmark: `cairn policy analyze` and `cairn policy diff` (the proof) on the
default bundle and on a generated 1,000-policy set, each cold (no cache) and warm (the
solver's answers cached), beside `cairn policy validate --no-analyze` on the same policies in the
same run: the proof's cost as a multiple of validation.

    python benches/policy_bench.py [--policies 1000] [--runs 3]

Needs CAIRN_BIN and CVC5 (benches/policy.sh sets both)."""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(os.environ.get("CAIRN_REPO", Path(__file__).resolve().parent.parent))
CAIRN = os.environ.get("CAIRN_BIN", str(REPO / "target" / "debug" / "cairn"))

ACTIONS = [f"act{i}" for i in range(10)]
SCHEMA = """
entity Group;
entity User in [Group] { level: Long, department: String, active: Bool };
entity Doc { owner: User, level: Long, tags: Set<String> };
action {actions} appliesTo {
  principal: User,
  resource: Doc,
  context: { hour: Long, mfa: Bool }
};
""".replace("{actions}", ", ".join(ACTIONS))


def generate(n, seed=7):
    """`n` policies over 10 actions: permits on levels, groups, ownership and tags, and forbids
    carving out hours, inactive users and secret documents."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        action = rng.choice(ACTIONS)
        kind = rng.random()
        if kind < 0.7:
            cond = rng.choice([
                f"principal.level > {rng.randint(0, 9)} && resource.level < {rng.randint(1, 10)}",
                f"resource.owner == principal && context.hour >= {rng.randint(0, 12)}",
                f'resource.tags.contains("t{rng.randint(0, 30)}") && principal.department == "d{rng.randint(0, 9)}"',
                f"context.mfa && principal.level >= {rng.randint(0, 9)}",
            ])
            scope = rng.choice(["principal", f'principal in Group::"g{rng.randint(0, 20)}"'])
            out.append(f'@id("p{i}")\npermit ({scope}, action == Action::"{action}", resource)\nwhen {{ {cond} }};\n')
        else:
            cond = rng.choice([
                f"context.hour < {rng.randint(0, 6)} || context.hour > {rng.randint(18, 23)}",
                "!principal.active",
                f"resource.level >= {rng.randint(8, 12)} && !context.mfa",
            ])
            out.append(f'@id("f{i}")\nforbid (principal, action == Action::"{action}", resource)\nwhen {{ {cond} }};\n')
    return "\n".join(out)


def cairn(args, cwd, ok=(0,)):
    t = time.perf_counter()
    r = subprocess.run([CAIRN, *args], cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode not in ok:
        sys.exit(f"cairn {' '.join(args)} exited {r.returncode}:\n{r.stderr[-2000:]}")
    return took, r


def median(f, runs):
    return statistics.median(f() for _ in range(runs))


def bench(name, base, head, runs):
    print(f"\n{name}: {len(list(head.glob('*.cedar')))} file(s)")
    work = base.parent
    validate = median(lambda: cairn(["policy", "validate", "--policies", str(head), "--no-analyze"], work)[0], runs)
    analyze_cold = median(lambda: cairn(["policy", "analyze", "--policies", str(head), "--no-cache"], work)[0], runs)
    diff_cold = median(lambda: cairn(["policy", "diff", "--base", str(base), "--policies", str(head),
                                      "--prove", "--no-cache"], work)[0], runs)
    _, r = cairn(["policy", "diff", "--base", str(base), "--policies", str(head), "--prove", "--no-cache",
                  "--format", "json"], work)
    envs = json.loads(r.stdout)["proof"]["environments"]
    print(f"  diff: {sum(e['verdict'] != 'equivalent' for e in envs)} of {len(envs)} environments changed")
    shutil.rmtree(work / ".cairn", ignore_errors=True)
    cairn(["policy", "diff", "--base", str(base), "--policies", str(head), "--prove"], work)
    cairn(["policy", "analyze", "--policies", str(head)], work)
    diff_warm = median(lambda: cairn(["policy", "diff", "--base", str(base), "--policies", str(head), "--prove"], work)[0], runs)
    analyze_warm = median(lambda: cairn(["policy", "analyze", "--policies", str(head)], work)[0], runs)
    _, r = cairn(["policy", "analyze", "--policies", str(head), "--no-cache"], work)
    print(f"  {r.stdout.strip().splitlines()[-1]}")
    rows = [
        ("validate --no-analyze (peer)", validate),
        ("analyze, cold", analyze_cold),
        ("analyze, cached", analyze_warm),
        ("diff --prove, cold", diff_cold),
        ("diff --prove, cached", diff_warm),
    ]
    for label, t in rows:
        print(f"  {label:<30} {t:8.2f} s   {t / validate:7.1f}x validate")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The default bundle against itself with one changed threshold.
        d = tmp / "default"
        shutil.copytree(REPO / "policies", d / "base")
        shutil.copytree(REPO / "policies", d / "head")
        models = d / "head" / "models.cedar"
        models.write_text(models.read_text() + '\n@id("bench-widen")\npermit (principal, action, resource);\n')
        bench("default bundle", d / "base", d / "head", a.runs)
        # The generated set against itself with a tenth of the conditions loosened.
        g = tmp / "generated"
        for side in ("base", "head"):
            (g / side).mkdir(parents=True)
            (g / side / "schema.cedarschema").write_text(SCHEMA)
        text = generate(a.policies)
        (g / "base" / "policies.cedar").write_text(text)
        (g / "head" / "policies.cedar").write_text(text.replace("level > 1 ", "level > 0 "))
        bench(f"generated {a.policies}-policy set", g / "base", g / "head", a.runs)


if __name__ == "__main__":
    main()
