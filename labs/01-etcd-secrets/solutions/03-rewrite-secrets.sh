#!/usr/bin/env bash
# Rewrites every Secret through the API so that the API server stores it again, encrypted with the
# first provider of the EncryptionConfiguration; then lists any value still not encrypted.
set -euo pipefail

# A controller may update a Secret between the read and the write; retry those conflicts.
for attempt in 1 2 3; do
  if kubectl get secrets --all-namespaces -o json | kubectl replace -f - >/dev/null; then
    break
  fi
  [ "$attempt" -lt 3 ] || exit 1
  sleep 2
done

etcd() {
  etcdctl --endpoints https://127.0.0.1:2379 \
    --cacert /etc/kubernetes/pki/etcd/ca.crt \
    --cert /etc/kubernetes/pki/apiserver-etcd-client.crt \
    --key /etc/kubernetes/pki/apiserver-etcd-client.key "$@"
}

plain=0
for key in $(etcd get /registry/secrets --prefix --keys-only); do
  prefix=$(etcd get "$key" --print-value-only | head -c 8 | tr -d '\0' || true)
  if [ "$prefix" != "k8s:enc:" ]; then
    echo "still plain text: $key"
    plain=$((plain + 1))
  fi
done
echo "$plain Secrets still in plain text"
[ "$plain" -eq 0 ]
