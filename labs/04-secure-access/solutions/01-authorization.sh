#!/usr/bin/env bash
# Replaces the AlwaysAllow authorizer with Node and RBAC, and proves a user without roles is refused.
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

started=$(apiserver_start_time)
before=$(sha256sum "$manifest")
sed -i 's|--authorization-mode=.*$|--authorization-mode=Node,RBAC|' "$manifest"
if [ "$(sha256sum "$manifest")" != "$before" ]; then
  wait_for_apiserver_restart "$started"
fi

# An API server restart can leave the aggregated `view` ClusterRole empty until the controller
# manager aggregates it again; wait, so that what RBAC grants is what the next step shows.
deadline=$((SECONDS + 120))
until [ -n "$(kubectl get clusterrole view -o jsonpath='{.rules}' 2>/dev/null)" ] || [ "$SECONDS" -ge "$deadline" ]; do
  sleep 2
done

answer=$(kubectl auth can-i create pods -n kube-system --as=bob || true)
echo "can bob create pods in kube-system? $answer"
[ "$answer" = no ]
