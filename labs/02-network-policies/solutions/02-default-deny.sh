#!/usr/bin/env bash
# Denies all ingress and egress for every pod in namespace shop.
set -euo pipefail

cat >/root/shop-default-deny.yaml <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny
  namespace: shop
spec:
  podSelector: {}
  policyTypes:
    - Ingress
    - Egress
YAML
kubectl apply -f /root/shop-default-deny.yaml
kubectl get networkpolicies -n shop
