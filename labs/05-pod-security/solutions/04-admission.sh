#!/usr/bin/env bash
# Checks what the restricted Pod Security Standard would reject in namespace payments (server-side
# dry run), then enforces it, with warn and audit at the same level.
set -euo pipefail

# Before Kubernetes 1.23 nothing enforces the label; the dry run then reports nothing.
kubectl label --dry-run=server --overwrite namespace payments pod-security.kubernetes.io/enforce=restricted
kubectl label --overwrite namespace payments \
  pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/enforce-version=latest \
  pod-security.kubernetes.io/warn=restricted \
  pod-security.kubernetes.io/audit=restricted
kubectl get namespace payments --show-labels
