#!/usr/bin/env bash
# Makes payments-api run as a non-root user, unprivileged, without privilege escalation or
# capabilities, under the runtime's default seccomp profile. hostPID and the host volume stay for
# the next step. The image changes to nginx's unprivileged build, which runs as uid 101 on 8080.
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
      hostPID: true
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
          volumeMounts:
            - name: host
              mountPath: /host
      volumes:
        - name: host
          hostPath:
            path: /
YAML
kubectl apply -f /root/pod-security/payments-api.yaml
wait_for_rollout
kubectl get deployment payments-api -n payments -o jsonpath='{.spec.template.spec}'; echo
