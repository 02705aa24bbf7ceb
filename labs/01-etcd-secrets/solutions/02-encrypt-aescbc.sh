#!/usr/bin/env bash
# Turns on aescbc encryption at rest for Secrets, as the Kubernetes documentation shows, and proves
# it from etcd. Idempotent: an existing configuration (and its key) is kept.
set -euo pipefail

live_manifest=/etc/kubernetes/manifests/kube-apiserver.yaml
# Every edit goes to a copy that replaces the manifest once: the kubelet restarts the API server on
# each change it sees, and a half-edited manifest would mean an extra restart mid-way.
manifest=$(mktemp)
trap 'rm -f "$manifest"' EXIT
config=/etc/kubernetes/enc/enc.yaml

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

# Adds a flag right after `- kube-apiserver` in the command list, with the list's indentation.
add_flag() {
  grep -q -- "- $1" "$manifest" && return 0
  sed -i "s|^\( *\)- kube-apiserver\$|&\n\1- $1|" "$manifest"
}

# Adds an item as the first entry of a list (`volumeMounts:` or `volumes:`), indented like the
# entry it goes before. Items are given as lines joined with '|'.
add_list_item() {
  local key=$1 item=$2 tmp
  tmp=$(mktemp)
  awk -v key="$key" -v item="$item" '
    pending {
      match($0, /^ */); indent = substr($0, 1, RLENGTH)
      n = split(item, lines, "|"); for (i = 1; i <= n; i++) print indent lines[i]
      pending = 0
    }
    { print }
    !done && $0 ~ ("^ *" key ":[ ]*$") { pending = 1; done = 1 }' "$manifest" >"$tmp"
  cat "$tmp" >"$manifest"
  rm -f "$tmp"
}

mkdir -p /etc/kubernetes/enc
if [ ! -s "$config" ]; then
  key=$(head -c 32 /dev/urandom | base64)
  umask 077
  cat >"$config" <<YAML
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: $key
      - identity: {}
YAML
fi
chmod 600 "$config"

started=$(apiserver_start_time)
cp "$live_manifest" "$manifest"
[ -f /root/kube-apiserver.yaml.orig ] || cp "$live_manifest" /root/kube-apiserver.yaml.orig
add_flag "--encryption-provider-config=$config"
grep -q 'mountPath: /etc/kubernetes/enc$' "$manifest" \
  || add_list_item volumeMounts '- mountPath: /etc/kubernetes/enc|  name: enc|  readOnly: true'
grep -q 'path: /etc/kubernetes/enc$' "$manifest" \
  || add_list_item volumes '- hostPath:|    path: /etc/kubernetes/enc|    type: DirectoryOrCreate|  name: enc'
if ! cmp -s "$manifest" "$live_manifest"; then
  cat "$manifest" >"$live_manifest"
  wait_for_apiserver_restart "$started"
fi

kubectl get secret secret1 -n default >/dev/null 2>&1 \
  || kubectl create secret generic secret1 -n default --from-literal=mykey=mydata
etcdctl --endpoints https://127.0.0.1:2379 \
  --cacert /etc/kubernetes/pki/etcd/ca.crt \
  --cert /etc/kubernetes/pki/apiserver-etcd-client.crt \
  --key /etc/kubernetes/pki/apiserver-etcd-client.key \
  get /registry/secrets/default/secret1 | hexdump -C
