#!/usr/bin/env bash
# Requires mutual TLS for every workload in namespace shop.
set -euo pipefail

cat >/root/shop-mtls.yaml <<'YAML'
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: shop
spec:
  mtls:
    mode: STRICT
YAML
# Istio before 1.22 serves only v1beta1.
if ! kubectl apply -f /root/shop-mtls.yaml 2>/dev/null; then
  sed 's|security.istio.io/v1$|security.istio.io/v1beta1|' /root/shop-mtls.yaml | kubectl apply -f -
fi
kubectl get peerauthentications.security.istio.io -n shop
