#!/usr/bin/env bash
# hardlab-grade on the Checkov comparison corpus, plain and as a pipeline runs it: a configuration
# file with suppressions (a skipped check, object patterns with reasons and expiry dates) and a
# baseline holding every finding of the plain run, so each finding is matched against both.
#
# Usage: bench/grade-pipeline/run.sh
# Environment: OBJECTS (1200), SEED (20261126), RUNS (10), OUT (target/bench/grade-pipeline).
set -euo pipefail
cd "$(dirname "$0")/../.."

OBJECTS=${OBJECTS:-1200}
SEED=${SEED:-20261126}
RUNS=${RUNS:-10}
OUT=${OUT:-target/bench/grade-pipeline}
command -v hyperfine >/dev/null || { echo "hyperfine not found" >&2; exit 2; }

mkdir -p "$OUT"
CORPUS="$OUT/corpus"
python3 bench/checkov/gen_corpus.py "$CORPUS" --objects "$OBJECTS" --seed "$SEED"
cargo build --release -q -p hardlab-grader --bin hardlab-grade
GRADE=$PWD/target/release/hardlab-grade

cat >"$OUT/pipeline.yaml" <<'YAML'
paths: [corpus]
skip-checks: [podsec.image-pinned]
suppressions:
  - check: podsec.read-only-root-fs
    reason: apps write to their root filesystem until the emptyDir migration
    expires: 2999-12-31
  - check: podsec.no-host-path
    object: DaemonSet/*
    reason: node agents read the host's logs
  - check: podsec.resource-limits
    object: "*/batch-*/*"
    reason: batch namespaces have a LimitRange
YAML
"$GRADE" static --no-config "$CORPUS" --create-baseline "$OUT/baseline.json" --output /dev/null 2>/dev/null || true
echo "baseline: $(grep -c '"fingerprint"' "$OUT/baseline.json") findings; $("$GRADE" --version)"

# Exit codes differ (the plain run has findings, the pipeline run accepts them): -i.
hyperfine --warmup 2 --runs "$RUNS" -i -N \
  --export-markdown "$OUT/timing.md" \
  -n "plain" "$GRADE static --no-config $CORPUS --format json --output /dev/null" \
  -n "suppressions + baseline" "$GRADE static --config $OUT/pipeline.yaml --baseline $OUT/baseline.json --format json --output /dev/null" \
  -n "suppressions + baseline, sarif+github+gitlab" "$GRADE static --config $OUT/pipeline.yaml --baseline $OUT/baseline.json --format github --output /dev/null --output sarif=/dev/null --output gitlab=/dev/null"
cat "$OUT/timing.md"
