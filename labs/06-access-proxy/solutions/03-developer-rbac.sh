#!/usr/bin/env bash
# The talk's developer-read grant: Role dev-read (get/list/watch on pods and pods/log) bound to
# Group developer-read in default, verified with impersonated access reviews.
set -euo pipefail

kubectl apply -f - <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: dev-read
  namespace: default
rules:
  - apiGroups: [""]
    resources: ["pods", "pods/log"]
    verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: dev-read-binding
  namespace: default
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: developer-read
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: dev-read
YAML

as_dev=(--as=probe --as-group=developer-read)
[ "$(kubectl auth can-i list pods "${as_dev[@]}")" = yes ]
[ "$(kubectl auth can-i get pods --subresource=log "${as_dev[@]}")" = yes ]
[ "$(kubectl auth can-i list services "${as_dev[@]}" || true)" = no ]
echo "developer-read: pods and logs in default, no services"
