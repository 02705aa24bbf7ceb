#!/usr/bin/env bash
# Enables Istio sidecar injection for namespace shop and recreates its pods so that each gets the proxy.
set -euo pipefail

kubectl label namespace shop istio-injection=enabled --overwrite
kubectl rollout restart deployment -n shop
kubectl rollout status deployment -n shop --timeout=300s
# rollout status returns when the new pods are ready; wait for the old ones to be gone as well.
deadline=$((SECONDS + 180))
while kubectl get pods -n shop -o jsonpath='{range .items[*]}{.spec.containers[*].name} {.spec.initContainers[*].name}{"\n"}{end}' \
  | grep -qv istio-proxy; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "shop still has pods without istio-proxy after 180 s" >&2; exit 1; }
  sleep 2
done
kubectl get pods -n shop -o jsonpath='{range .items[*]}{.metadata.name}{": "}{.spec.containers[*].name}{"\n"}{end}'
