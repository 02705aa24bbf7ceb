#!/usr/bin/env python3
"""Writes a deterministic corpus of Kubernetes workload manifests for the Checkov comparison.

Every object draws its securityContext settings from a seeded random generator, so the same seed
and count always give byte-identical files. The mix covers what both tools judge: root and
non-root users at pod and container level (container overrides included), privilege escalation,
privileged, capabilities, seccomp (fields, legacy annotations, Unconfined), read-only root
filesystems, host namespaces and hostPath, across Pods, Deployments, StatefulSets, DaemonSets,
Jobs and CronJobs, some with init containers.

Usage: gen_corpus.py OUT_DIR [--objects N] [--seed S]
Only the standard library is used; the output is YAML written by hand (no PyYAML needed).
"""

import argparse
import json
import os
import random
import shutil

KINDS = ["Deployment", "Deployment", "Pod", "StatefulSet", "DaemonSet", "Job", "CronJob"]
API_VERSIONS = {
    "Pod": "v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}
IMAGES = [
    "registry.example/shop/web:1.4.2",
    "registry.example/shop/api:latest",
    "registry.example/shop/worker",
    "registry.example/shop/db@sha256:" + "ab" * 32,
    "nginx:1.25",
]


def q(value):
    """A YAML scalar: JSON strings are valid YAML and need no escaping rules of our own."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def emit(value, indent=0):
    """Block-style YAML for dicts and lists of scalars/dicts."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(emit(item, indent + 2))
            elif isinstance(item, dict):
                lines.append(f"{pad}{key}: {{}}")
            elif isinstance(item, list):
                lines.append(f"{pad}{key}: []")
            else:
                lines.append(f"{pad}{key}: {q(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                inner = emit(item, indent + 2)
                first = inner[0].lstrip()
                lines.append(f"{pad}- {first}")
                lines.extend(inner[1:])
            else:
                lines.append(f"{pad}- {q(item)}")
    return lines


def pick(rng, weighted):
    """One value from [(weight, value), ...]."""
    total = sum(weight for weight, _ in weighted)
    roll = rng.uniform(0, total)
    for weight, value in weighted:
        roll -= weight
        if roll <= 0:
            return value
    return weighted[-1][1]


def container_security(rng):
    sc = {}
    user = pick(rng, [(5, None), (1, 0), (2, 1000), (2, 20000)])
    if user is not None:
        sc["runAsUser"] = user
    non_root = pick(rng, [(6, None), (3, True), (1, False)])
    if non_root is not None:
        sc["runAsNonRoot"] = non_root
    escalation = pick(rng, [(3, None), (5, False), (2, True)])
    if escalation is not None:
        sc["allowPrivilegeEscalation"] = escalation
    privileged = pick(rng, [(7, None), (2, False), (1, True)])
    if privileged is not None:
        sc["privileged"] = privileged
    caps = pick(
        rng,
        [
            (3, None),
            (4, {"drop": ["ALL"]}),
            (1, {"drop": ["NET_RAW"]}),
            (1, {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
            (1, {"add": ["SYS_ADMIN"]}),
        ],
    )
    if caps is not None:
        sc["capabilities"] = caps
    read_only = pick(rng, [(4, None), (5, True), (1, False)])
    if read_only is not None:
        sc["readOnlyRootFilesystem"] = read_only
    seccomp = pick(rng, [(6, None), (2, "RuntimeDefault"), (1, "Unconfined")])
    if seccomp is not None:
        sc["seccompProfile"] = {"type": seccomp}
    return sc


def container(rng, name):
    c = {"name": name, "image": rng.choice(IMAGES)}
    if rng.random() < 0.6:
        c["resources"] = {"limits": {"cpu": "200m", "memory": "128Mi"}}
    sc = container_security(rng)
    if sc:
        c["securityContext"] = sc
    if rng.random() < 0.3:
        c["ports"] = [{"containerPort": 8080}]
    return c


def pod_spec(rng, annotations):
    spec = {}
    pod_sc = {}
    user = pick(rng, [(5, None), (1, 0), (2, 10001)])
    if user is not None:
        pod_sc["runAsUser"] = user
    if rng.random() < 0.4:
        pod_sc["runAsNonRoot"] = True
    seccomp = pick(rng, [(5, None), (3, "RuntimeDefault"), (1, "Localhost"), (1, "Unconfined")])
    if seccomp == "Localhost":
        pod_sc["seccompProfile"] = {"type": "Localhost", "localhostProfile": "profiles/app.json"}
    elif seccomp is not None:
        pod_sc["seccompProfile"] = {"type": seccomp}
    if rng.random() < 0.08:
        annotations["seccomp.security.alpha.kubernetes.io/pod"] = "runtime/default"
    if pod_sc:
        spec["securityContext"] = pod_sc
    for field, chance in (("hostPID", 0.07), ("hostIPC", 0.05), ("hostNetwork", 0.08)):
        if rng.random() < chance:
            spec[field] = True
    if rng.random() < 0.1:
        spec["initContainers"] = [container(rng, "init")]
    spec["containers"] = [container(rng, "app")]
    if rng.random() < 0.25:
        spec["containers"].append(container(rng, "sidecar"))
    volumes = []
    if rng.random() < 0.1:
        volumes.append({"name": "host", "hostPath": {"path": "/var/log"}})
    if rng.random() < 0.3:
        volumes.append({"name": "tmp", "emptyDir": {}})
    if volumes:
        spec["volumes"] = volumes
    return spec


def workload(rng, index):
    kind = rng.choice(KINDS)
    name = f"{kind.lower()}-{index:05d}"
    namespace = f"team-{index % 7}"
    labels = {"app": name}
    annotations = {}
    spec = pod_spec(rng, annotations)
    template_meta = {"labels": labels}
    if annotations:
        template_meta["annotations"] = annotations
    obj = {"apiVersion": API_VERSIONS[kind], "kind": kind, "metadata": {"name": name, "namespace": namespace}}
    if kind == "Pod":
        obj["metadata"]["labels"] = labels
        if annotations:
            obj["metadata"]["annotations"] = annotations
        obj["spec"] = spec
        return obj
    template = {"metadata": template_meta, "spec": spec}
    if kind == "CronJob":
        spec["restartPolicy"] = "OnFailure"
        obj["spec"] = {"schedule": "*/30 * * * *", "jobTemplate": {"spec": {"template": template}}}
    elif kind == "Job":
        spec["restartPolicy"] = "Never"
        obj["spec"] = {"template": template}
    else:
        obj["spec"] = {"selector": {"matchLabels": labels}, "template": template}
        if kind == "StatefulSet":
            obj["spec"]["serviceName"] = name
    return obj


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--objects", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if os.path.isdir(args.out_dir):
        shutil.rmtree(args.out_dir)
    os.makedirs(args.out_dir)
    index = 0
    files = 0
    while index < args.objects:
        # Files of one to four documents, as repositories hold them.
        count = min(rng.randint(1, 4), args.objects - index)
        documents = []
        for _ in range(count):
            documents.append("\n".join(emit(workload(rng, index))))
            index += 1
        path = os.path.join(args.out_dir, f"manifests-{files:04d}.yaml")
        with open(path, "w", encoding="utf-8") as out:
            out.write("\n---\n".join(documents) + "\n")
        files += 1
    print(f"wrote {index} objects in {files} files to {args.out_dir} (seed {args.seed})")


if __name__ == "__main__":
    main()
