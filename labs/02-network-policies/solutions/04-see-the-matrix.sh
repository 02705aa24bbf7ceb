#!/usr/bin/env bash
# Checks on the wire that the intended connections work and the others are dropped.
set -euo pipefail

kubectl wait -n shop --for=condition=Ready pod --all --timeout=300s

kubectl exec -n shop deploy/frontend -- wget -q -T 5 -O- http://backend:8080
if ! kubectl exec -n shop deploy/backend -- sh -c 'nc -w 5 db 3306 </dev/null | head -c 1 | grep -q .'; then
  echo "backend cannot reach db:3306" >&2
  exit 1
fi
if kubectl exec -n shop deploy/frontend -- sh -c 'nc -w 3 db 3306 </dev/null | head -c 1 | grep -q .'; then
  echo "frontend still reaches db:3306: does the CNI enforce NetworkPolicy?" >&2
  exit 1
fi
echo "frontend -> backend and backend -> db work; frontend -> db is dropped"
