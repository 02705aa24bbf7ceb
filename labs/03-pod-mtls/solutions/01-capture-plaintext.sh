#!/usr/bin/env bash
# Captures the backend pod's traffic with an ephemeral tcpdump container and shows the frontend's
# bearer token in it.
set -euo pipefail

kubectl wait -n shop --for=condition=Ready pod --all --timeout=300s
pod=$(kubectl get pods -n shop -l app=backend -o jsonpath='{.items[0].metadata.name}')
sniffer="sniff-$(date +%s)"
kubectl debug -n shop "$pod" --image=nicolaka/netshoot:v0.13 --target=api --container="$sniffer" -- \
  tcpdump -i eth0 -A -s0 -c 20 'tcp port 8080 and tcp[tcpflags] & tcp-push != 0'

for _ in $(seq 60); do
  if kubectl logs -n shop "$pod" -c "$sniffer" 2>/dev/null | grep -q 'Authorization: Bearer shop-token'; then
    kubectl logs -n shop "$pod" -c "$sniffer" | grep -m1 'Authorization: Bearer'
    exit 0
  fi
  sleep 2
done
echo "no plaintext token captured within 120 s" >&2
exit 1
