#!/usr/bin/env bash
# Captures the backend pod's traffic on its network interface again: the token must not appear.
set -euo pipefail

pod=$(kubectl get pods -n shop -l app=backend -o jsonpath='{.items[0].metadata.name}')
sniffer="sniff-$(date +%s)"
kubectl debug -n shop "$pod" --image=nicolaka/netshoot:v0.13 --target=api --container="$sniffer" -- \
  tcpdump -i eth0 -A -s0 -c 20 'tcp port 8080 and tcp[tcpflags] & tcp-push != 0'

# 20 data packets take about 20 s at one request every 2 s.
kubectl wait -n shop --for=jsonpath='{.status.ephemeralContainerStatuses[?(@.name=="'"$sniffer"'")].state.terminated.reason}'=Completed \
  "pod/$pod" --timeout=180s
if kubectl logs -n shop "$pod" -c "$sniffer" | grep -q 'Authorization: Bearer'; then
  echo "the bearer token is still readable on the wire" >&2
  exit 1
fi
echo "20 packets captured on eth0, none in plain text"
