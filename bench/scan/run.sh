#!/usr/bin/env bash
# The static scan's figures in one run: the 10,000-object corpus plain and with suppressions and a
# baseline in play (CPU user + sys, wall, peak RSS from /usr/bin/time), then hardlab-grade and
# Checkov side by side on the 1,000-object corpus (hyperfine).
#
# Prerequisites: hyperfine; GNU time (/usr/bin/time); checkov 3.3.30 (pip install checkov==3.3.30,
# in a venv; set CHECKOV to its path). Usage: bench/scan/run.sh
# Environment: CHECKOV, SEED (20261126), RUNS (3), OUT (target/bench/scan).
set -euo pipefail
cd "$(dirname "$0")/../.."

CHECKOV=${CHECKOV:-$(command -v checkov || echo /work/venvs/checkov/bin/checkov)}
SEED=${SEED:-20261126}
RUNS=${RUNS:-3}
OUT=${OUT:-target/bench/scan}
command -v hyperfine >/dev/null || { echo "hyperfine not found" >&2; exit 2; }
[[ -x "$CHECKOV" ]] || { echo "checkov not found (set CHECKOV)" >&2; exit 2; }

mkdir -p "$OUT"
python3 bench/checkov/gen_corpus.py "$OUT/corpus10k" --objects 10000 --seed "$SEED"
python3 bench/checkov/gen_corpus.py "$OUT/corpus1k" --objects 1000 --seed "$SEED"
cargo build --release -q -p hardlab-grader --bin hardlab-grade
GRADE=$PWD/target/release/hardlab-grade
echo "$("$GRADE" --version), checkov $("$CHECKOV" --version); load: $(cut -d' ' -f1-3 /proc/loadavg)"

# The same suppressions as bench/grade-pipeline, and a baseline of every finding of the plain run.
cat >"$OUT/pipeline.yaml" <<'YAML'
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
"$GRADE" static --no-config "$OUT/corpus10k" --create-baseline "$OUT/baseline.json" --output /dev/null 2>/dev/null || true

measure() {
  local name=$1
  shift
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "$name: %U user %S sys %e wall %M KB" "$@" >/dev/null 2>>"$OUT/time.log" || true
  done
}
: >"$OUT/time.log"
measure "10k plain" "$GRADE" static --no-config "$OUT/corpus10k" --format json --output /dev/null
measure "10k suppressions + baseline" "$GRADE" static --config "$OUT/pipeline.yaml" \
  --baseline "$OUT/baseline.json" "$OUT/corpus10k" --format json --output /dev/null
grep -E "^10k" "$OUT/time.log"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

# Both exit 1 because the corpus has findings: -i.
hyperfine --warmup 1 --runs "$RUNS" -i --export-markdown "$OUT/checkov.md" \
  -n "hardlab-grade static" "$GRADE static --no-config $OUT/corpus1k --format json --output /dev/null" \
  -n "checkov -d --framework kubernetes" \
  "$CHECKOV -d $OUT/corpus1k --framework kubernetes -o json --quiet --skip-download > /dev/null"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
