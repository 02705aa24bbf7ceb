#!/usr/bin/env bash
# Lab 4's starting state: an API server that authorizes everything (AlwaysAllow), and RBAC bindings that are far too broad: the CI
# service account bound to cluster-admin, and `view` granted to every unauthenticated request.
# Before 1.24 the explicit --insecure-port=0 is removed too.
# Idempotent.
set -euo pipefail

manifest=/etc/kubernetes/manifests/kube-apiserver.yaml

apiserver_start_time() {
  kubectl get --raw /metrics 2>/dev/null | awk '$1 == "process_start_time_seconds" { print $2 }' || true
}

wait_for_apiserver_restart() {
  local before=$1 now deadline=$((SECONDS + 180))
  until now=$(apiserver_start_time) && [ -n "$now" ] && [ "$now" != "$before" ] \
    && kubectl get --raw /readyz >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "kube-apiserver did not come back within 180 s after its manifest changed" >&2
      return 1
    fi
    sleep 2
  done
}

minor=$(kubectl get --raw /version | tr -d ' \n' | sed -n 's/.*"minor":"\([0-9]*\).*/\1/p')

started=$(apiserver_start_time)
before=$(sha256sum "$manifest")
sed -i 's|--authorization-mode=.*$|--authorization-mode=AlwaysAllow|' "$manifest"
# Before 1.24 kubeadm spells out --insecure-port=0; drop it, as older installers did (from 1.20 the
# flag accepts only 0, so the port itself cannot be opened again on any version the labs run).
if [ "$minor" -lt 24 ]; then
  sed -i '/--insecure-port=/d' "$manifest"
fi
if [ "$(sha256sum "$manifest")" != "$before" ]; then
  wait_for_apiserver_restart "$started"
fi

kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: dev
---
apiVersion: v1
kind: Namespace
metadata:
  name: ci
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: deployer
  namespace: ci
---
# "Our pipeline deploys to several namespaces; the chart's README says to do this."
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ci-deployer-admin
subjects:
  - kind: ServiceAccount
    name: deployer
    namespace: ci
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
---
# "The status page must list pods, and it has no credentials."
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: status-page-view
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: system:unauthenticated
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: view
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: dev
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginxinc/nginx-unprivileged:1.27
          ports:
            - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: dev
spec:
  selector: {app: web}
  ports:
    - port: 80
      targetPort: 8080
YAML
# `view` gets its rules from the controller manager's ClusterRole aggregation; wait for them so the
# anonymous request in step 2 sees what the binding grants.
deadline=$((SECONDS + 120))
until [ -n "$(kubectl get clusterrole view -o jsonpath='{.rules}' 2>/dev/null)" ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "the view ClusterRole has no rules after 120 s: is kube-controller-manager running?" >&2
    exit 1
  fi
  sleep 2
done
echo "lab 4 ready: AlwaysAllow$([ "$minor" -lt 24 ] && echo ', no --insecure-port=0'), over-broad bindings planted"
