#!/usr/bin/env bash
# Moves Secret encryption to KMS v2 with hardlab's plugin: starts the plugin, puts a kms v2
# provider first, mounts the socket into the API server, rewrites every Secret, then drops the old
# aescbc key. Needs Kubernetes >= 1.27 and the `hardlab` binary on the node.
set -euo pipefail

live_manifest=/etc/kubernetes/manifests/kube-apiserver.yaml
# Every edit goes to a copy that replaces the manifest once: the kubelet restarts the API server on
# each change it sees, and a half-edited manifest would mean an extra restart mid-way.
manifest=$(mktemp)
trap 'rm -f "$manifest"' EXIT
config=/etc/kubernetes/enc/enc.yaml
socket=/var/run/kms/kms.sock

apiserver_start_time() {
  kubectl get --raw /metrics 2>/dev/null | awk '$1 == "process_start_time_seconds" { print $2 }' || true
}

wait_for_apiserver_restart() {
  local before=$1 now deadline=$((SECONDS + 180))
  until now=$(apiserver_start_time) && [ -n "$now" ] && [ "$now" != "$before" ] \
    && kubectl get --raw /readyz >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "kube-apiserver did not come back within 180 s" >&2
      return 1
    fi
    sleep 2
  done
}

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

# The static pod restarts only when its manifest changes; a configuration change needs a restart
# by hand. The kubelet starts a new container when the old one stops; the test node's supervisor
# restarts a stopped process likewise.
restart_apiserver() {
  local started
  started=$(apiserver_start_time)
  if command -v crictl >/dev/null 2>&1 && [ -n "$(crictl ps --name kube-apiserver -q 2>/dev/null)" ]; then
    crictl stop "$(crictl ps --name kube-apiserver -q)" >/dev/null
  else
    pkill -x kube-apiserver
  fi
  wait_for_apiserver_restart "$started"
}

rewrite_secrets() {
  for attempt in 1 2 3; do
    kubectl get secrets --all-namespaces -o json | kubectl replace -f - >/dev/null && return 0
    [ "$attempt" -lt 3 ] || return 1
    sleep 2
  done
}

if ! command -v hardlab >/dev/null 2>&1; then
  echo "the hardlab binary is not on this node's PATH: copy it in (docker cp) to run the KMS plugin" >&2
  exit 1
fi

mkdir -p /var/run/kms /etc/kubernetes/kms
if ! pgrep -f 'hardlab kms-plugin' >/dev/null; then
  rm -f "$socket"
  setsid nohup hardlab kms-plugin --socket "$socket" --key-file /etc/kubernetes/kms/kek.key \
    >/var/log/hardlab-kms.log 2>&1 </dev/null &
fi
for _ in $(seq 30); do [ -S "$socket" ] && break; sleep 1; done
[ -S "$socket" ] || { echo "the KMS plugin did not open $socket; see /var/log/hardlab-kms.log" >&2; exit 1; }

kms_provider='      - kms:
          apiVersion: v2
          name: hardlab-kms
          endpoint: unix:///var/run/kms/kms.sock
          timeout: 3s'

if ! grep -q 'name: hardlab-kms' "$config" 2>/dev/null; then
  # Keep whatever aescbc key step 2 made, so the Secrets it encrypted stay readable until rewritten.
  old_key=$(awk '/secret:/ { print $2; exit }' "$config" 2>/dev/null || true)
  umask 077
  mkdir -p /etc/kubernetes/enc
  {
    printf '%s\n' 'apiVersion: apiserver.config.k8s.io/v1' 'kind: EncryptionConfiguration' 'resources:' \
      '  - resources:' '      - secrets' '    providers:'
    printf '%s\n' "$kms_provider"
    if [ -n "$old_key" ]; then
      printf '%s\n' '      - aescbc:' '          keys:' '            - name: key1' "              secret: $old_key"
    fi
    printf '%s\n' '      - identity: {}'
  } >"$config"
  chmod 600 "$config"
  config_changed=1
fi

started=$(apiserver_start_time)
cp "$live_manifest" "$manifest"
grep -q -- '--encryption-provider-config=' "$manifest" \
  || sed -i "s|^\( *\)- kube-apiserver\$|&\n\1- --encryption-provider-config=$config|" "$manifest"
grep -q 'mountPath: /etc/kubernetes/enc$' "$manifest" \
  || add_list_item volumeMounts '- mountPath: /etc/kubernetes/enc|  name: enc|  readOnly: true'
grep -q 'path: /etc/kubernetes/enc$' "$manifest" \
  || add_list_item volumes '- hostPath:|    path: /etc/kubernetes/enc|    type: DirectoryOrCreate|  name: enc'
grep -q 'mountPath: /var/run/kms$' "$manifest" \
  || add_list_item volumeMounts '- mountPath: /var/run/kms|  name: kms'
grep -q 'path: /var/run/kms$' "$manifest" \
  || add_list_item volumes '- hostPath:|    path: /var/run/kms|    type: DirectoryOrCreate|  name: kms'
if ! cmp -s "$manifest" "$live_manifest"; then
  cat "$manifest" >"$live_manifest"
  wait_for_apiserver_restart "$started"
elif [ "${config_changed:-0}" = 1 ]; then
  restart_apiserver
fi

rewrite_secrets

# Nothing depends on the aescbc key any more: remove it (and identity) from the node.
if grep -q 'aescbc:' "$config"; then
  {
    printf '%s\n' 'apiVersion: apiserver.config.k8s.io/v1' 'kind: EncryptionConfiguration' 'resources:' \
      '  - resources:' '      - secrets' '    providers:'
    printf '%s\n' "$kms_provider"
  } >"$config"
  restart_apiserver
fi

etcdctl --endpoints https://127.0.0.1:2379 \
  --cacert /etc/kubernetes/pki/etcd/ca.crt \
  --cert /etc/kubernetes/pki/apiserver-etcd-client.crt \
  --key /etc/kubernetes/pki/apiserver-etcd-client.key \
  get /registry/secrets/default/secret1 | hexdump -C
