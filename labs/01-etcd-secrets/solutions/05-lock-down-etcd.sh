#!/usr/bin/env bash
# Moves the API server back to etcd's TLS port, then closes etcd's plain-text listener and makes it
# demand client certificates. In this order the API server never loses its database.
set -euo pipefail

etcd_manifest=/etc/kubernetes/manifests/etcd.yaml
apiserver_manifest=/etc/kubernetes/manifests/kube-apiserver.yaml
tls_flags=(--cacert /etc/kubernetes/pki/etcd/ca.crt
  --cert /etc/kubernetes/pki/apiserver-etcd-client.crt
  --key /etc/kubernetes/pki/apiserver-etcd-client.key)

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
before=$(sha256sum "$apiserver_manifest")
sed -i 's|--etcd-servers=http://127.0.0.1:4001|--etcd-servers=https://127.0.0.1:2379|' "$apiserver_manifest"
if [ "$(sha256sum "$apiserver_manifest")" != "$before" ]; then
  wait_for_apiserver_restart "$started"
fi

before=$(sha256sum "$etcd_manifest")
sed -i \
  -e 's|--client-cert-auth=false|--client-cert-auth=true|' \
  -e '/--listen-client-urls=/s|,http://0\.0\.0\.0:4001||' \
  "$etcd_manifest"
if [ "$(sha256sum "$etcd_manifest")" != "$before" ]; then
  # Wait for the old etcd to go (its plain-text port closes), then for the new one to serve TLS.
  deadline=$((SECONDS + 180))
  while etcdctl --endpoints http://127.0.0.1:4001 --dial-timeout 1s endpoint health >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "etcd still serves http://127.0.0.1:4001 after 180 s" >&2; exit 1; }
    sleep 2
  done
  until etcdctl --endpoints https://127.0.0.1:2379 "${tls_flags[@]}" endpoint health >/dev/null 2>&1 \
    && kubectl get --raw /readyz >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "etcd or the API server did not come back within 180 s" >&2; exit 1; }
    sleep 2
  done
fi

# A client without a certificate must be refused now.
if etcdctl --endpoints https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt --dial-timeout 2s \
  get /registry/namespaces --prefix --keys-only >/dev/null 2>&1; then
  echo "etcd still answers a client without a certificate" >&2
  exit 1
fi
echo "etcd: TLS only, client certificates required; API server: https://127.0.0.1:2379"
