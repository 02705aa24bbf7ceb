#!/usr/bin/env bash
# Runs `hardlab-grade static` the way a pipeline job wants it; used by the GitHub Action
# (action.yml) and the GitLab CI template (ci/hardlab-grade.gitlab-ci.yml), and testable alone.
#
# Settings come from the environment (the action maps its inputs onto these):
#   HARDLAB_GRADE        the grader to run (default: hardlab-grade on PATH)
#   HG_PATHS             files or directories, separated by spaces (default: `paths:` of the
#                        configuration file, else the working directory)
#   HG_CONFIG            a configuration file (default: .hardlab-grade.yaml found from here up)
#   HG_BASELINE          a baseline file: fail only on findings not in it
#   HG_FAIL_ON           fail or warn
#   HG_FORMAT            the report on standard output (default: the configuration's, else text)
#   HG_OUTPUTS           more reports as FORMAT=FILE, separated by spaces
#   HG_EXTRA_ARGS        anything else for the grader, separated by spaces
#   GITHUB_OUTPUT        when set, `exit-code=N` is appended to it and the script exits 0 so that
#                        the action can still upload SARIF before it fails the job
#   GITHUB_STEP_SUMMARY  when set, the text report is appended to it
# Exit code: the grader's (0 nothing fails, 1 findings, 2 could not grade).
set -uo pipefail

grader=${HARDLAB_GRADE:-hardlab-grade}

# Whether the grader will find a configuration file from here up (it then reads `paths:` there).
config_found() {
  local dir=$PWD
  while :; do
    [[ -f "$dir/.hardlab-grade.yaml" || -f "$dir/.hardlab-grade.yml" ]] && return 0
    [[ "$dir" == / ]] && return 1
    dir=$(dirname "$dir")
  done
}
if ! command -v "$grader" >/dev/null 2>&1; then
  echo "hardlab-grade: $grader is not installed (set HARDLAB_GRADE, or see docs/ci.md)" >&2
  exit 2
fi

args=(static)
[[ -n "${HG_CONFIG:-}" ]] && args+=(--config "$HG_CONFIG")
[[ -n "${HG_BASELINE:-}" ]] && args+=(--baseline "$HG_BASELINE")
[[ -n "${HG_FAIL_ON:-}" ]] && args+=(--fail-on "$HG_FAIL_ON")
[[ -n "${HG_FORMAT:-}" ]] && args+=(--format "$HG_FORMAT")
for output in ${HG_OUTPUTS:-}; do
  args+=(--output "$output")
done
summary=""
if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
  summary=$(mktemp)
  trap 'rm -f "$summary"' EXIT
  args+=(--output "text=$summary")
fi
# shellcheck disable=SC2206 # word splitting is the documented contract of these variables
extra=(${HG_EXTRA_ARGS:-})
args+=("${extra[@]}")
# shellcheck disable=SC2206
paths=(${HG_PATHS:-})
if ((${#paths[@]} == 0)) && [[ -z "${HG_CONFIG:-}" ]] && ! config_found; then
  paths=(.)
fi
args+=("${paths[@]}")

"$grader" "${args[@]}"
code=$?

if [[ -n "$summary" && -s "$summary" ]]; then
  {
    echo '### hardlab-grade'
    echo '```'
    cat "$summary"
    echo '```'
  } >>"$GITHUB_STEP_SUMMARY"
fi
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
  echo "exit-code=$code" >>"$GITHUB_OUTPUT"
  exit 0
fi
exit "$code"
