#!/usr/bin/env bash
# Scans the vendor chart's manifests, rewrites the Deployment so that it meets the restricted
# standard, and scans again: no failures left. Runs the scan where hardlab-grade is installed.
set -euo pipefail

dir=/root/pod-security/incoming
mkdir -p "$dir"
if command -v hardlab-grade >/dev/null 2>&1; then
  hardlab-grade static --lab pod-security "$dir" || true
fi

cat >"$dir/report-viewer.yaml" <<'YAML'
# Rendered from a vendor's Helm chart, then hardened: no host network, no privileges, non-root.
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
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: viewer
          image: vendor/report-viewer:2.4.1
          ports:
            - containerPort: 8080
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
          resources:
            requests:
              cpu: 50m
              memory: 64Mi
            limits:
              cpu: 250m
              memory: 128Mi
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

if command -v hardlab-grade >/dev/null 2>&1; then
  hardlab-grade static --lab pod-security "$dir"
else
  echo "hardlab-grade is not installed on this node; run: hardlab-grade static --lab pod-security $dir"
fi
# Server-side dry run: the namespace's Pod Security label judges the template too (as a warning).
kubectl apply --dry-run=server -f "$dir"
