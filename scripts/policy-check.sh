#!/usr/bin/env bash
# The policy review gate of a pull request, as .github/actions/policy-check runs it; also
# runnable anywhere (scripts/test.sh's tests run it on a real git repository).
#
#   scripts/policy-check.sh [POLICIES_DIR]
#
# Runs, in order, and always all of them:
#   1. cairn policy validate --deny-warnings   (strict validation, and the proof-based analysis)
#   2. cairn policy fmt --check
#   3. cairn policy test --min-coverage $MIN_COVERAGE
#   4. cairn policy diff --base git:$BASE_REF --fail-on $FAIL_ON   (proof, and replay when
#      $RECORDS is set); a pull request carrying the label $OVERRIDE_LABEL (in $PR_LABELS,
#      comma-separated) reports a widening without failing on it
# and writes a Markdown report (the PR comment) to $REPORT (default policy-check.md), appends
# it to $GITHUB_STEP_SUMMARY when set, and sets `report`, `widens` and `failed` in
# $GITHUB_OUTPUT when set. Exit 1 when any step failed, 2 when a step could not run.
#
# Environment: CAIRN (default `cairn`), BASE_REF (default origin/main), FAIL_ON (widen),
# MIN_COVERAGE (100), OVERRIDE_LABEL (policy-widening-approved), PR_LABELS, RECORDS, REPORT.
set -uo pipefail

POLICIES=${1:-policies}
CAIRN=${CAIRN:-cairn}
BASE_REF=${BASE_REF:-origin/main}
FAIL_ON=${FAIL_ON:-widen}
MIN_COVERAGE=${MIN_COVERAGE:-100}
OVERRIDE_LABEL=${OVERRIDE_LABEL:-policy-widening-approved}
REPORT=${REPORT:-policy-check.md}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

overridden=0
IFS=',' read -r -a labels <<< "${PR_LABELS:-}"
for l in "${labels[@]}"; do
  [[ "$(echo "$l" | xargs)" == "$OVERRIDE_LABEL" ]] && overridden=1
done
fail_on=$FAIL_ON
if [[ $overridden -eq 1 && $FAIL_ON == widen ]]; then
  fail_on=""
fi

worst=0
rows=()
failed=()
# step NAME COMMAND...: runs it, keeps its output, records its status.
step() {
  local name=$1; shift
  "$@" > "$work/$name.out" 2> "$work/$name.err"
  local rc=$?
  local status="✅ passed"
  if [[ $rc -eq 1 ]]; then status="❌ failed"; [[ $worst -lt 1 ]] && worst=1; failed+=("$name"); fi
  if [[ $rc -ge 2 ]]; then status="⛔ could not run (exit $rc)"; worst=2; failed+=("$name"); fi
  rows+=("| \`$name\` | $status |")
  echo "$name: exit $rc" >&2
  return 0
}

step validate "$CAIRN" policy validate --policies "$POLICIES" --deny-warnings
step fmt "$CAIRN" policy fmt --check --policies "$POLICIES"
step test "$CAIRN" policy test --policies "$POLICIES" --min-coverage "$MIN_COVERAGE"
diff_args=(policy diff --policies "$POLICIES" --base "git:$BASE_REF" --format markdown)
[[ -n "$fail_on" ]] && diff_args+=(--fail-on "$fail_on")
[[ -n "${RECORDS:-}" ]] && diff_args+=(--records "$RECORDS")
step diff "$CAIRN" "${diff_args[@]}"
"$CAIRN" policy diff --policies "$POLICIES" --base "git:$BASE_REF" --format json \
  ${RECORDS:+--records "$RECORDS"} > "$work/diff.json" 2>/dev/null
widens=$(grep -q '"widens":true' "$work/diff.json" && echo true || echo false)

{
  echo "# Policy check"
  echo
  echo "| Step | Result |"
  echo "|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  if [[ $overridden -eq 1 && $widens == true ]]; then
    echo "> The label \`$OVERRIDE_LABEL\` approves widening access: reported, not failed."
    echo
  fi
  for name in "${failed[@]}"; do
    if [[ $name != diff ]]; then
      echo "<details><summary>\`cairn policy $name\` output</summary>"
      echo
      echo '```'
      cat "$work/$name.out" "$work/$name.err" | tail -n 200
      echo '```'
      echo
      echo "</details>"
      echo
    fi
  done
  if [[ -s "$work/diff.out" ]]; then
    cat "$work/diff.out"
  else
    echo '```'
    tail -n 50 "$work/diff.err"
    echo '```'
  fi
} > "$REPORT"

[[ -n "${GITHUB_STEP_SUMMARY:-}" ]] && cat "$REPORT" >> "$GITHUB_STEP_SUMMARY"
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
  {
    echo "report=$REPORT"
    echo "widens=$widens"
    echo "failed=$([[ $worst -ne 0 ]] && echo true || echo false)"
  } >> "$GITHUB_OUTPUT"
fi
exit $worst
