#!/usr/bin/env bash
# Creates the Secret this step reads and shows it in plain text in etcd.
set -euo pipefail

if ! kubectl get secret db-password >/dev/null 2>&1; then
  kubectl create secret generic db-password --from-literal=password='correct-horse-battery-staple'
fi

etcdctl --endpoints https://127.0.0.1:2379 \
  --cacert /etc/kubernetes/pki/etcd/ca.crt \
  --cert /etc/kubernetes/pki/apiserver-etcd-client.crt \
  --key /etc/kubernetes/pki/apiserver-etcd-client.key \
  get /registry/secrets/default/db-password | hexdump -C
