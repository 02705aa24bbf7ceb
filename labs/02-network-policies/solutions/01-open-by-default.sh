#!/usr/bin/env bash
# Shows that with no NetworkPolicy every connection succeeds, including the unintended ones.
set -euo pipefail

kubectl wait -n shop --for=condition=Available deployment --all --timeout=300s
kubectl wait -n shop --for=condition=Ready pod --all --timeout=300s

kubectl exec -n shop deploy/frontend -- wget -q -T 5 -O- http://backend:8080
# MySQL may still be initialising after the pod is Ready; give it a while to answer.
for _ in $(seq 30); do
  if kubectl exec -n shop deploy/frontend -- sh -c 'nc -w 3 db 3306 </dev/null | head -c 1 | grep -q .'; then
    echo "frontend -> db:3306 is open (no policy)"
    exit 0
  fi
  sleep 5
done
echo "frontend could not reach db:3306, but no policy exists yet" >&2
exit 1
