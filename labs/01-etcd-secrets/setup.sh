#!/usr/bin/env bash
# Lab 1's starting state: etcd as many hand-built clusters run it. It also listens on plain HTTP
# on every interface (port 4001, etcd's historical client port), accepts clients without a
# certificate, and the API server talks to it over that plain-text port. Idempotent.
set -euo pipefail

etcd_manifest=/etc/kubernetes/manifests/etcd.yaml
apiserver_manifest=/etc/kubernetes/manifests/kube-apiserver.yaml
tls_flags=(--cacert /etc/kubernetes/pki/etcd/ca.crt
  --cert /etc/kubernetes/pki/apiserver-etcd-client.crt
  --key /etc/kubernetes/pki/apiserver-etcd-client.key)

apiserver_start_time() {
  kubectl get --raw /metrics 2>/dev/null | awk '$1 == "process_start_time_seconds" { print $2 }' || true
}

# Waits until the API server runs again from a changed manifest: a new process, and ready.
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

# etcd: add the plain-text listener and stop asking for client certificates.
etcd_before=$(sha256sum "$etcd_manifest")
sed -i \
  -e 's|--client-cert-auth=true|--client-cert-auth=false|' \
  -e '/--listen-client-urls=/{/http:\/\/0.0.0.0:4001/!s|$|,http://0.0.0.0:4001|}' \
  "$etcd_manifest"
if [ "$(sha256sum "$etcd_manifest")" != "$etcd_before" ]; then
  deadline=$((SECONDS + 180))
  until etcdctl --endpoints http://127.0.0.1:4001 endpoint health >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "etcd did not come back on http://127.0.0.1:4001 within 180 s" >&2
      exit 1
    fi
    sleep 2
  done
fi
# The TLS port must still answer for the API server's current connection and the learner's commands.
etcdctl --endpoints https://127.0.0.1:2379 "${tls_flags[@]}" endpoint health >/dev/null

# API server: talk to etcd over the plain-text port.
started=$(apiserver_start_time)
apiserver_before=$(sha256sum "$apiserver_manifest")
sed -i 's|--etcd-servers=https://127.0.0.1:2379|--etcd-servers=http://127.0.0.1:4001|' "$apiserver_manifest"
if [ "$(sha256sum "$apiserver_manifest")" != "$apiserver_before" ]; then
  wait_for_apiserver_restart "$started"
fi
echo "lab 1 ready: etcd open on http://0.0.0.0:4001, the API server uses it"
