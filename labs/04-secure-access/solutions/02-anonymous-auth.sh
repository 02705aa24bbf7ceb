#!/usr/bin/env bash
# Turns off anonymous authentication. On nodes whose API server
# manifest has kubelet httpGet probes (kubeadm, kind), switches them to tcpSocket probes: with
# anonymous requests refused they would get 401 and the kubelet would restart the API server.
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

if grep -q -- '--anonymous-auth=' "$manifest"; then
  sed -i 's|--anonymous-auth=.*$|--anonymous-auth=false|' "$manifest"
else
  sed -i 's|^\( *\)- kube-apiserver$|&\n\1- --anonymous-auth=false|' "$manifest"
fi

if grep -q 'httpGet:' "$manifest"; then
  tmp=$(mktemp)
  awk '
    in_probe {
      match($0, /^ */)
      if (RLENGTH > probe_indent) {
        if ($1 == "host:" || $1 == "port:") print
        next
      }
      in_probe = 0
    }
    /^ *httpGet: *$/ {
      match($0, /^ */); probe_indent = RLENGTH
      sub(/httpGet:/, "tcpSocket:"); print; in_probe = 1; next
    }
    { print }' "$manifest" >"$tmp"
  # Rewrite in place: a temporary file in the manifests folder would be run as a static pod.
  cat "$tmp" >"$manifest"
  rm -f "$tmp"
fi

if [ "$(sha256sum "$manifest")" != "$before" ]; then
  wait_for_apiserver_restart "$started"
fi

code=$(curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1:6443/api/v1/namespaces/kube-system/secrets)
echo "anonymous GET /api/v1/namespaces/kube-system/secrets: $code"
[ "$code" = 401 ]
