#!/usr/bin/env bash
# As bob: pods are listed, services are forbidden by the cluster's RBAC.
# Runs in the lab node's terminal; bob gets a login home and a kubeconfig of his own, so the
# admin's stay put.
set -euo pipefail
set -a; . /etc/hardlab/client.env; set +a
export HARDLAB_HOME="$HOME/.hardlab-bob" KUBECONFIG="$HOME/.kube/proxy-bob"

hardlab login --user bob --simulated
hardlab kube login
kubectl get pods
if kubectl get services 2>"$HOME/forbidden.txt"; then
  echo "bob must not list services" >&2
  exit 1
fi
grep -q 'User "bob" cannot list resource "services"' "$HOME/forbidden.txt"
# The admin (your own login) asks the server to verify the audit chain.
HARDLAB_HOME="$HOME/.hardlab" hardlab audit verify
