#!/usr/bin/env bash
# Lab 6's starting state, on the cluster side: no developer-read grant yet, and the RBAC the
# proxy's own identity needs (impersonate users and groups, nothing else). The proxy side (the
# learner's tenant, the cluster registered in it as lab-<user> with label env=dev, and the node's
# /etc/hardlab/client.env) is done by hardlab when the lab starts.
# Idempotent.
set -euo pipefail

kubectl delete rolebinding dev-read-binding -n default --ignore-not-found
kubectl delete role dev-read -n default --ignore-not-found

kubectl apply -f - <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: hardlab-proxy-impersonator
rules:
  - apiGroups: [""]
    resources: ["users", "groups"]
    verbs: ["impersonate"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: hardlab-proxy-impersonator
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: hardlab-proxy-impersonator
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: hardlab-proxy
YAML

[ "$(kubectl auth can-i list pods --as=probe --as-group=developer-read || true)" = no ]
echo "lab 6: no developer grant yet; hardlab-proxy may impersonate"
