#!/usr/bin/env bash
# Removes the over-broad bindings and gives the CI service account a Role in the one namespace it
# deploys to, without Secrets.
set -euo pipefail

kubectl delete clusterrolebinding ci-deployer-admin status-page-view --ignore-not-found

kubectl apply -f - <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: deployer
  namespace: dev
rules:
  - apiGroups: ["apps"]
    resources: ["deployments"]
    verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
  - apiGroups: [""]
    resources: ["services", "configmaps"]
    verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: deployer
  namespace: dev
subjects:
  - kind: ServiceAccount
    name: deployer
    namespace: ci
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: deployer
YAML

as_ci=--as=system:serviceaccount:ci:deployer
[ "$(kubectl auth can-i create deployments -n dev "$as_ci")" = yes ]
[ "$(kubectl auth can-i get secrets -n dev "$as_ci" || true)" = no ]
anonymous_may_list_pods=$(kubectl create -o jsonpath='{.status.allowed}' -f - <<'YAML'
apiVersion: authorization.k8s.io/v1
kind: SubjectAccessReview
spec:
  user: system:anonymous
  groups: ["system:unauthenticated"]
  resourceAttributes: {verb: list, resource: pods, namespace: dev}
YAML
)
[ "$anonymous_may_list_pods" = false ]
echo "ci:deployer is limited to deploying in dev; anonymous requests get nothing"
