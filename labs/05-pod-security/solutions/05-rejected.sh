#!/usr/bin/env bash
# Tries to start a privileged pod in namespace payments; Pod Security Admission must refuse it.
# Needs Kubernetes >= 1.23 (Pod Security Admission).
set -euo pipefail

overrides='{"spec":{"containers":[{"name":"attacker","image":"busybox:1.36","command":["sleep","3600"],"securityContext":{"privileged":true}}]}}'
if output=$(kubectl run attacker -n payments --image=busybox:1.36 --restart=Never --overrides="$overrides" 2>&1); then
  kubectl delete pod attacker -n payments --ignore-not-found --wait=false
  echo "the privileged pod was admitted: $output" >&2
  exit 1
fi
echo "$output"
grep -q 'violates PodSecurity' <<<"$output"
