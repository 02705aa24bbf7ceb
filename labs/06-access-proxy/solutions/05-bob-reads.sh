#!/usr/bin/env bash
# As bob: pods are listed, services are forbidden by the cluster's RBAC.
# Runs on the learner's machine (where the hardlab CLI is), not on the node: the proxy steps
# act on hardlab itself. Needs HARDLAB_SERVER and HARDLAB_USER, and for each login the password in HARDLAB_PASSWORD
# and the current code from the authenticator app in HARDLAB_OTP (hardlab login reads both).
set -euo pipefail
: "${LAB_CLUSTER:?the proxy name of your lab cluster, lab-<your user name>}"
: "${HARDLAB_SERVER:?the hardlab server's URL, as in your browser's address bar (the Access page shows it)}"
export HARDLAB_HOME="$HOME/.hardlab-bob"
export KUBECONFIG="$HOME/.kube/config-bob"

hardlab login --server "$HARDLAB_SERVER" --user bob
hardlab kube login --cluster "$LAB_CLUSTER"
kubectl get pods
if kubectl get services 2>forbidden.txt; then
  echo "bob must not list services" >&2
  exit 1
fi
grep -q 'User "bob" cannot list resource "services"' forbidden.txt
hardlab audit verify
