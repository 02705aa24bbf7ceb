#!/usr/bin/env bash
# hardlab-grade against Checkov on one generated manifest corpus: wall time of both in one
# hyperfine run, then the per-object agreement table on the overlapping pod security rules.
#
# Prerequisites (neither is part of the repository):
#   hyperfine                      (Debian: apt-get install hyperfine)
#   checkov 3.3.30 in a venv:      python3 -m venv /work/venvs/checkov
#                                  /work/venvs/checkov/bin/pip install checkov==3.3.30
#   PyYAML is not needed: the corpus generator and compare.py use only the standard library.
#
# Usage: bench/checkov/run.sh
# Environment: CHECKOV (default: checkov on PATH, else /work/venvs/checkov/bin/checkov),
#   OBJECTS (1200), SEED (20261126), RUNS (5), OUT (target/bench/checkov).
# Checkov runs with --skip-download so that it neither waits for nor depends on its vendor's API
# (it would fetch guideline links); both tools write JSON, as a CI job would consume it.
set -euo pipefail
cd "$(dirname "$0")/../.."

CHECKOV=${CHECKOV:-$(command -v checkov || echo /work/venvs/checkov/bin/checkov)}
OBJECTS=${OBJECTS:-1200}
SEED=${SEED:-20261126}
RUNS=${RUNS:-5}
OUT=${OUT:-target/bench/checkov}

if [[ ! -x "$CHECKOV" ]]; then
  echo "checkov not found (set CHECKOV or install it: pip install checkov==3.3.30)" >&2
  exit 2
fi
command -v hyperfine >/dev/null || { echo "hyperfine not found" >&2; exit 2; }

mkdir -p "$OUT"
CORPUS="$OUT/corpus"
python3 bench/checkov/gen_corpus.py "$CORPUS" --objects "$OBJECTS" --seed "$SEED"
cargo build --release -q -p hardlab-grader --bin hardlab-grade
GRADE=target/release/hardlab-grade
echo "checkov $("$CHECKOV" --version), $($GRADE --version 2>/dev/null || echo hardlab-grade)"

# Both exit 1 because the corpus has findings: -i keeps hyperfine from treating that as a failure.
hyperfine --warmup 1 --runs "$RUNS" -i \
  --export-json "$OUT/timing.json" --export-markdown "$OUT/timing.md" \
  -n "hardlab-grade static" "$GRADE static $CORPUS --format json --output /dev/null" \
  -n "checkov -d --framework kubernetes" \
  "$CHECKOV -d $CORPUS --framework kubernetes -o json --quiet --skip-download > /dev/null"

python3 - "$OUT/timing.json" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
ours = results["hardlab-grade static"]["mean"]
theirs = results["checkov -d --framework kubernetes"]["mean"]
print(f"hardlab-grade {ours * 1000:.1f} ms, checkov {theirs:.2f} s: hardlab-grade is {theirs / ours:.0f}x faster")
PY

# The outputs the agreement table is computed from.
"$GRADE" static "$CORPUS" --lab pod-security --format json --output "$OUT/hardlab.json" || true
"$CHECKOV" -d "$CORPUS" --framework kubernetes -o json --quiet --skip-download >"$OUT/checkov.json" || true
python3 bench/checkov/compare.py "$CORPUS" "$OUT/hardlab.json" "$OUT/checkov.json" | tee "$OUT/agreement.md"
# The causes of each disagreement; PyYAML comes with checkov, so use its interpreter.
CHECKOV_PYTHON=$(dirname "$(readlink -f "$CHECKOV")")/python
[[ -x "$CHECKOV_PYTHON" ]] || CHECKOV_PYTHON=python3
"$CHECKOV_PYTHON" bench/checkov/explain.py "$CORPUS" "$OUT/hardlab.json" "$OUT/checkov.json" | tee "$OUT/causes.md"
