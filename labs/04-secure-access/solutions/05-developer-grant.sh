#!/usr/bin/env bash
# Gives the group developer-read get/list/watch on pods and their logs in namespace dev, and
# verifies the grant with impersonated access reviews.
set -euo pipefail

kubectl apply -f - <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: dev-read
  namespace: dev
rules:
  - apiGroups: [""]
    resources: ["pods", "pods/log"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: dev-read-binding
  namespace: dev
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: developer-read
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: dev-read
YAML

as_bob=(--as=bob --as-group=developer-read)
[ "$(kubectl auth can-i list pods -n dev "${as_bob[@]}")" = yes ]
[ "$(kubectl auth can-i get pods --subresource=log -n dev "${as_bob[@]}")" = yes ]
[ "$(kubectl auth can-i list services -n dev "${as_bob[@]}" || true)" = no ]
echo "developer-read: pods and logs in dev, no services"
