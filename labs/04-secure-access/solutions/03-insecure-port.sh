#!/usr/bin/env bash
# Closes the API server's insecure port (Kubernetes < 1.24; from 1.24 the flag does not exist).
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
if [ "$minor" -ge 24 ]; then
  echo "Kubernetes 1.$minor has no insecure port; nothing to do"
  exit 0
fi

started=$(apiserver_start_time)
before=$(sha256sum "$manifest")
if grep -q -- '--insecure-port=' "$manifest"; then
  sed -i 's|--insecure-port=.*$|--insecure-port=0|' "$manifest"
else
  sed -i 's|^\( *\)- kube-apiserver$|&\n\1- --insecure-port=0|' "$manifest"
fi
if [ "$(sha256sum "$manifest")" != "$before" ]; then
  wait_for_apiserver_restart "$started"
fi

if curl -s --max-time 3 -o /dev/null http://127.0.0.1:8080/api; then
  echo "something still answers on http://127.0.0.1:8080" >&2
  exit 1
fi
echo "the insecure port is closed"
