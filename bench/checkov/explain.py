#!/usr/bin/env python3
"""Sorts every disagreement of compare.py's table into its cause, by looking at the object.

Each rule pair has a classifier that reads the disagreeing object's pod spec and names why the
two tools differ (which field, which container, which documented difference of semantics). An
object no classifier recognises is counted as "unexplained", so a new kind of disagreement shows
up instead of hiding in a count.

Usage: explain.py CORPUS_DIR HARDLAB_JSON CHECKOV_JSON
Needs PyYAML, which checkov's own venv has: run it with that venv's python.
"""

import collections
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import PAIRS, checkov_failures, hardlab_failures  # noqa: E402


def load(corpus):
    objects = {}
    for entry in sorted(os.listdir(corpus)):
        if entry.endswith(".yaml"):
            with open(os.path.join(corpus, entry), encoding="utf-8") as handle:
                for doc in yaml.safe_load_all(handle):
                    meta = doc["metadata"]
                    objects[f"{doc['kind']}/{meta['namespace']}/{meta['name']}"] = doc
    return objects


def pod(doc):
    if doc["kind"] == "Pod":
        return doc["spec"], doc["metadata"]
    template = doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
    return template["spec"], template.get("metadata", {})


def security(container):
    return container.get("securityContext") or {}


def effective(spec, container, field):
    own = security(container)
    return own[field] if field in own else (spec.get("securityContext") or {}).get(field)


def non_root(spec, container):
    user = effective(spec, container, "runAsUser")
    if user == 0:
        return False
    return (user is not None and user > 0) or effective(spec, container, "runAsNonRoot") is True


def seccomp(spec, meta, container):
    own = (security(container).get("seccompProfile") or {}).get("type")
    if own:
        return own
    pod_type = ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    if pod_type:
        return pod_type
    if (meta.get("annotations") or {}).get("seccomp.security.alpha.kubernetes.io/pod") in ("runtime/default", "docker/default"):
        return "RuntimeDefault"
    return None


def explain_non_root_23(doc, only_ours):
    spec, _ = pod(doc)
    containers = spec["containers"]
    if only_ours:
        if any(effective(spec, c, "runAsUser") == 0 for c in containers):
            return "a container's effective runAsUser is 0 while runAsNonRoot is true: Checkov accepts runAsNonRoot alone, hardlab catches the UID 0 (the kubelet would refuse to start it)"
        if all(non_root(spec, c) for c in containers):
            return "only an init container may run as root: CKV_K8S_23 does not look at initContainers"
    elif all(non_root(spec, c) for c in containers + spec.get("initContainers", [])):
        if any(security(c).get("runAsNonRoot") is False for c in containers):
            return "a container sets runAsNonRoot: false but inherits a non-zero runAsUser from the pod: it cannot run as root, so hardlab passes it; Checkov fails the explicit false"
    return None


def explain_non_root_40(doc, only_ours):
    spec, _ = pod(doc)
    containers = spec["containers"]
    if only_ours:
        if all(non_root(spec, c) for c in containers):
            return "only an init container may run as root: CKV_K8S_40 does not look at initContainers"
        return None
    users = [effective(spec, c, "runAsUser") for c in containers]
    if any(u is None or 0 < u < 10000 for u in users):
        return "non-root with a UID below 10000 or no UID (runAsNonRoot: true alone): Checkov wants UID >= 10000 to avoid host UIDs; hardlab asks only for non-root, as the Pod Security Standards do"
    return None


def explain_caps_28(doc, only_ours):
    spec, _ = pod(doc)
    everyone = spec["containers"] + spec.get("initContainers", [])
    drops = [(security(c).get("capabilities") or {}).get("drop") or [] for c in everyone]
    if only_ours and all("ALL" in d or "NET_RAW" in d for d in drops):
        return "every container drops NET_RAW (or ALL) but not all of them drop ALL: CKV_K8S_28 asks only for NET_RAW"
    return None


def explain_host_path(doc, only_ours):
    spec, _ = pod(doc)
    paths = [v["hostPath"].get("path") for v in spec.get("volumes", []) if "hostPath" in v]
    if only_ours and paths and "/var/run/docker.sock" not in paths:
        return "a hostPath volume other than the Docker socket: Checkov has no general hostPath rule (CKV_K8S_27 looks only for docker.sock)"
    return None


def explain_seccomp(doc, only_ours):
    spec, meta = pod(doc)
    containers = spec["containers"]
    inits = spec.get("initContainers", [])
    pod_type = ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    annotated = (meta.get("annotations") or {}).get("seccomp.security.alpha.kubernetes.io/pod")
    if only_ours:
        if any(seccomp(spec, meta, c) == "Unconfined" for c in containers):
            if pod_type == "Unconfined" and annotated:
                return "the pod's seccompProfile field says Unconfined and its legacy annotation says runtime/default: hardlab reads the field (the API rejects the mismatch), Checkov the annotation"
            return "a container overrides the pod's RuntimeDefault with Unconfined: Checkov is satisfied by the pod level, hardlab honours the container override"
        if any(seccomp(spec, meta, c) not in ("RuntimeDefault", "Localhost") for c in inits):
            return "an init container has no or an Unconfined profile: CKV_K8S_31 does not look at initContainers"
        return None
    if all(seccomp(spec, meta, c) in ("RuntimeDefault", "Localhost") for c in containers + inits):
        if pod_type == "Localhost" or any(seccomp(spec, meta, c) == "Localhost" for c in containers):
            return "a Localhost profile: the Pod Security Standards accept it, CKV_K8S_31 accepts only runtime/default and docker/default"
        if pod_type == "Unconfined":
            return "the pod says Unconfined but every container overrides it with RuntimeDefault: hardlab honours the container level, Checkov fails the pod level"
        if doc["kind"] == "CronJob":
            return "a CronJob whose containers set RuntimeDefault themselves: Checkov reads container-level profiles for other kinds, not for CronJob templates"
    return None


def explain_digest(doc, only_ours):
    spec, _ = pod(doc)
    images = [c.get("image", "") for c in spec["containers"] + spec.get("initContainers", [])]
    if not only_ours and all("@sha256:" in i or (":" in i.rsplit("/", 1)[-1] and not i.endswith(":latest")) for i in images):
        return "images pinned by a version tag, not a digest: hardlab warns only on latest or no tag (CKV_K8S_14's rule), CKV_K8S_43 wants digests"
    return None


EXPLAIN = {
    ("podsec.run-as-non-root", "CKV_K8S_23"): explain_non_root_23,
    ("podsec.run-as-non-root", "CKV_K8S_40"): explain_non_root_40,
    ("podsec.capabilities-dropped", "CKV_K8S_28"): explain_caps_28,
    ("podsec.no-host-path", "CKV_K8S_27"): explain_host_path,
    ("podsec.seccomp-profile", "CKV_K8S_31"): explain_seccomp,
    ("podsec.image-pinned", "CKV_K8S_43"): explain_digest,
}


def main():
    corpus, hardlab_path, checkov_path = sys.argv[1:4]
    objects = load(corpus)
    import json

    with open(hardlab_path, encoding="utf-8") as handle:
        hardlab = hardlab_failures(json.load(handle))
    with open(checkov_path, encoding="utf-8") as handle:
        checkov = checkov_failures(json.load(handle))
    universe = set(objects)
    for check, ckv_ids, _ in PAIRS:
        ours = hardlab.get(check, set()) & universe
        theirs = set().union(*(checkov.get(ckv, set()) for ckv in ckv_ids)) & universe
        for only_ours, ids in ((True, ours - theirs), (False, theirs - ours)):
            if not ids:
                continue
            classify = EXPLAIN.get((check, ckv_ids[0]), lambda doc, side: None)
            causes = collections.Counter(classify(objects[i], only_ours) or "unexplained" for i in ids)
            side = "only hardlab fails" if only_ours else "only Checkov fails"
            print(f"\n`{check}` vs {' ∪ '.join(ckv_ids)}, {side} ({len(ids)}):")
            for cause, count in causes.most_common():
                print(f"- {count}: {cause}")


if __name__ == "__main__":
    main()
