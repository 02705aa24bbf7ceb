#!/usr/bin/env python3
"""Per-object agreement between hardlab-grade and Checkov on the overlapping pod security rules.

Reads both tools' JSON reports of the same corpus and prints a Markdown table: for each pair of
rules, how many objects both fail, both pass, only hardlab fails, only Checkov fails, with a few
example objects of each disagreement so that each can be looked at and explained.

Usage: compare.py CORPUS_DIR HARDLAB_JSON CHECKOV_JSON [--examples N]
  HARDLAB_JSON: `hardlab-grade static CORPUS_DIR --lab pod-security --format json`
  CHECKOV_JSON: `checkov -d CORPUS_DIR --framework kubernetes -o json --quiet --skip-download`
The corpus is the one gen_corpus.py writes (one `kind:` line and two-space metadata per document).
"""

import argparse
import json
import os
import re

# (hardlab check, Checkov checks whose union is the counterpart, note)
PAIRS = [
    ("podsec.run-as-non-root", ["CKV_K8S_23"], ""),
    ("podsec.run-as-non-root", ["CKV_K8S_40"], "Checkov: UID >= 10000"),
    ("podsec.no-privilege-escalation", ["CKV_K8S_20"], ""),
    ("podsec.capabilities-dropped", ["CKV_K8S_37"], ""),
    ("podsec.capabilities-dropped", ["CKV_K8S_28"], "Checkov: NET_RAW only"),
    ("podsec.no-privileged", ["CKV_K8S_16"], ""),
    ("podsec.no-host-namespaces", ["CKV_K8S_17", "CKV_K8S_18", "CKV_K8S_19"], "union of PID, IPC, network"),
    ("podsec.no-host-path", ["CKV_K8S_27"], "Checkov: docker socket only"),
    ("podsec.seccomp-profile", ["CKV_K8S_31"], ""),
    ("podsec.read-only-root-fs", ["CKV_K8S_22"], ""),
    ("podsec.resource-limits", ["CKV_K8S_11", "CKV_K8S_13"], "union of CPU, memory"),
    ("podsec.image-pinned", ["CKV_K8S_14"], ""),
    ("podsec.image-pinned", ["CKV_K8S_43"], "Checkov: digest required"),
]

KIND = re.compile(r'^kind: "?([A-Za-z]+)"?$', re.M)
NAME = re.compile(r'^  name: "?([^"\n]+)"?$', re.M)
NAMESPACE = re.compile(r'^  namespace: "?([^"\n]+)"?$', re.M)


def corpus_objects(corpus):
    """Every object in the corpus as `Kind/namespace/name`, with its file."""
    objects = {}
    for entry in sorted(os.listdir(corpus)):
        if not entry.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(corpus, entry), encoding="utf-8") as handle:
            text = handle.read()
        for document in text.split("\n---\n"):
            kind, name, namespace = KIND.search(document), NAME.search(document), NAMESPACE.search(document)
            if kind and name and namespace:
                objects[f"{kind.group(1)}/{namespace.group(1)}/{name.group(1)}"] = entry
    return objects


def hardlab_failures(report):
    """check ID -> set of objects it flags (fail or warn)."""
    failures = {}
    for result in report["results"]:
        flagged = {loc["object"] for loc in result.get("locations", []) if loc.get("object")}
        failures[result["check"]] = flagged if result["status"] in ("fail", "warn") else set()
    return failures


def checkov_failures(report):
    """check ID -> set of objects it fails, converted to `Kind/namespace/name`."""
    reports = report if isinstance(report, list) else [report]
    failures = {}
    for one in reports:
        for failed in one.get("results", {}).get("failed_checks", []):
            kind, namespace, name = failed["resource"].split(".", 2)
            failures.setdefault(failed["check_id"], set()).add(f"{kind}/{namespace}/{name}")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("hardlab_json")
    parser.add_argument("checkov_json")
    parser.add_argument("--examples", type=int, default=3)
    args = parser.parse_args()
    objects = corpus_objects(args.corpus)
    with open(args.hardlab_json, encoding="utf-8") as handle:
        hardlab = hardlab_failures(json.load(handle))
    with open(args.checkov_json, encoding="utf-8") as handle:
        checkov = checkov_failures(json.load(handle))
    universe = set(objects)
    print(f"{len(universe)} objects in {len(set(objects.values()))} files.\n")
    print("| hardlab check | Checkov | both fail | both pass | only hardlab fails | only Checkov fails | agreement |")
    print("|---|---|---:|---:|---:|---:|---:|")
    examples = []
    for check, ckv_ids, note in PAIRS:
        ours = hardlab.get(check, set()) & universe
        theirs = set().union(*(checkov.get(ckv, set()) for ckv in ckv_ids)) & universe
        both_fail = len(ours & theirs)
        both_pass = len(universe - ours - theirs)
        only_ours = sorted(ours - theirs)
        only_theirs = sorted(theirs - ours)
        agreement = 100.0 * (both_fail + both_pass) / len(universe)
        label = " ∪ ".join(ckv_ids) + (f" ({note})" if note else "")
        print(
            f"| `{check}` | {label} | {both_fail} | {both_pass} | {len(only_ours)} | {len(only_theirs)} | {agreement:.1f}% |"
        )
        for side, ids in (("only hardlab fails", only_ours), ("only Checkov fails", only_theirs)):
            if ids:
                shown = ", ".join(f"{i} ({objects[i]})" for i in ids[:: max(1, len(ids) // args.examples)][: args.examples])
                examples.append(f"- `{check}` vs {' ∪ '.join(ckv_ids)}, {side}: {shown}")
    if examples:
        print("\nExamples of each disagreement:\n")
        print("\n".join(examples))


if __name__ == "__main__":
    main()
