#!/usr/bin/env bash
# Lab 5's starting state: namespace payments without Pod Security labels, and the Deployment
# payments-api as a hurried debugging session left it: root, privileged, the node's PID namespace
# and its whole filesystem. Also a third-party chart's manifests to scan in the last step.
# Idempotent: the manifest is reset to its planted state.
set -euo pipefail

mkdir -p /root/pod-security/incoming

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
      containers:
        - name: api
          image: nginx
          imagePullPolicy: IfNotPresent
          ports:
            - containerPort: 80
          securityContext:
            privileged: true
            runAsUser: 0
          volumeMounts:
            - name: host
              mountPath: /host
      volumes:
        - name: host
          hostPath:
            path: /
YAML

cat >/root/pod-security/incoming/report-viewer.yaml <<'YAML'
# Rendered from a vendor's Helm chart ("helm template report-viewer vendor/report-viewer"), not yet applied.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: report-viewer
  namespace: payments
spec:
  replicas: 1
  selector:
    matchLabels:
      app: report-viewer
  template:
    metadata:
      labels:
        app: report-viewer
    spec:
      hostNetwork: true
      containers:
        - name: viewer
          image: vendor/report-viewer:latest
          ports:
            - containerPort: 8080
          securityContext:
            privileged: true
            runAsUser: 0
            capabilities:
              add: ["NET_ADMIN", "SYS_PTRACE"]
---
apiVersion: v1
kind: Service
metadata:
  name: report-viewer
  namespace: payments
spec:
  selector:
    app: report-viewer
  ports:
    - port: 80
      targetPort: 8080
YAML

kubectl create namespace payments --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace payments pod-security.kubernetes.io/enforce- pod-security.kubernetes.io/warn- \
  pod-security.kubernetes.io/audit- >/dev/null
kubectl apply -f /root/pod-security/payments-api.yaml
echo "lab 5 ready: payments/payments-api runs as root, privileged, with hostPID and the node's / mounted"
