#!/usr/bin/env bash
# Takes payments-api out of the node's PID namespace and removes the mount of the node's /.
set -euo pipefail

# Waits until every pod of payments-api comes from the Deployment's current template, so that no
# pod with the old spec is left for the checks (or an attacker) to find.
wait_for_rollout() {
  local deadline=$((SECONDS + 180)) generation observed revision hash stale
  while :; do
    generation=$(kubectl get deployment payments-api -n payments -o jsonpath='{.metadata.generation}')
    observed=$(kubectl get deployment payments-api -n payments -o jsonpath='{.status.observedGeneration}')
    revision=$(kubectl get deployment payments-api -n payments \
      -o jsonpath='{.metadata.annotations.deployment\.kubernetes\.io/revision}')
    hash=$(kubectl get replicasets -n payments -l app=payments-api -o jsonpath="{range .items[?(@.metadata.annotations.deployment\.kubernetes\.io/revision==\"$revision\")]}{.metadata.labels.pod-template-hash}{end}")
    stale=$(kubectl get pods -n payments -l app=payments-api \
      -o jsonpath='{range .items[*]}{.metadata.labels.pod-template-hash}{"\n"}{end}' | grep -vx "$hash" || true)
    if [ "$generation" = "$observed" ] && [ -n "$hash" ] && [ -z "$stale" ]; then
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "payments-api still has pods from an old template after 180 s" >&2
      return 1
    fi
    sleep 2
  done
}

cat >/root/pod-security/payments-api.yaml <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments-api
  namespace: payments
spec:
  replicas: 1
  # Recreate: the old pod goes before the new one comes, so no pod with the old spec lingers.
  strategy:
    type: Recreate
  selector:
    matchLabels:
      app: payments-api
  template:
    metadata:
      labels:
        app: payments-api
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 101
        runAsGroup: 101
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: api
          image: nginxinc/nginx-unprivileged
          imagePullPolicy: IfNotPresent
          ports:
            - containerPort: 8080
          securityContext:
            allowPrivilegeEscalation: false
            capabilities:
              drop: ["ALL"]
YAML
kubectl apply -f /root/pod-security/payments-api.yaml
wait_for_rollout
kubectl get deployment payments-api -n payments -o jsonpath='{.spec.template.spec}'; echo
