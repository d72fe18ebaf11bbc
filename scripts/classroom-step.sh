#!/usr/bin/env bash
# The grading step of action.yml (GitHub Classroom / GitHub Actions). Inputs come as environment
# variables (never pasted into the script, so a value cannot inject shell code):
#   INPUT_ASSIGNMENT, INPUT_PATH, INPUT_HIDDEN_TESTS (URL or path; empty: the grader's usual search),
#   GRADER_HIDDEN_KEY (for an encrypted bundle), INPUT_DEVICE, INPUT_TIMEOUT, GRADER_SRC (the action's folder).
# Writes result/score/max-score to $GITHUB_OUTPUT and the criteria table to $GITHUB_STEP_SUMMARY.
# Exits 0 whenever a result was produced (failing grades included), so the reporter step runs.
# tests/test_action.py runs this script in a temporary student repository.
set -uo pipefail
work="${RUNNER_TEMP:-$(mktemp -d)}"
out="$work/grader-report"
hidden="${INPUT_HIDDEN_TESTS:-}"

if [[ "$hidden" =~ ^https?:// ]]; then
  if ! curl -fsSL --retry 3 -o "$work/hidden.bundle" "$hidden"; then
    echo "::error title=grader::could not download the hidden tests from the hidden-tests URL"
    exit 4
  fi
  hidden="$work/hidden.bundle"
fi

args=("${INPUT_PATH:-.}" --single --format classroom,summary,html,json --out "$out" -q
      --device "${INPUT_DEVICE:-auto}" --timeout "${INPUT_TIMEOUT:-1800}")
if [ -f "${GRADER_SRC:-}/rubrics/${INPUT_ASSIGNMENT}.yaml" ]; then
  args+=(--rubric "$GRADER_SRC/rubrics/${INPUT_ASSIGNMENT}.yaml")
else
  args+=(--assignment "$INPUT_ASSIGNMENT")
fi
[ -n "$hidden" ] && args+=(--hidden-tests "$hidden")

grade "${args[@]}"
status=$?

if [ -f "$out/classroom.json" ]; then
  python - "$out/classroom.json" >> "${GITHUB_OUTPUT:-/dev/stdout}" <<'PY'
import base64, json, sys
raw = open(sys.argv[1], "rb").read()
data = json.loads(raw)
print("result=" + base64.b64encode(raw).decode("ascii"))
print(f"score={sum(t['score'] for t in data['tests']):g}")
print(f"max-score={data['max_score']:g}")
PY
  cat "$out/summary.md" >> "${GITHUB_STEP_SUMMARY:-/dev/stdout}"
  [ "$status" -ne 0 ] && echo "::warning title=grader::grade exited with status $status; see the report artifact"
  exit 0
fi
echo "::error title=grader::the grader could not run (exit $status); see the log above"
exit "$status"
