#!/usr/bin/env bash
# Logs in to your lab proxy as its admin (no role yet) and shows the proxy's refusal.
# Runs in the lab node's terminal. The node knows this hardlab server, your tenant, your user
# name and your cluster's name in the proxy (/etc/hardlab/client.env, written by hardlab when
# the lab started). hardlab login asks for your password and your authenticator's current code
# (or reads HARDLAB_PASSWORD and HARDLAB_OTP).
set -euo pipefail
set -a; . /etc/hardlab/client.env; set +a
# kubectl through the proxy, with a kubeconfig of its own: the node's admin.conf stays as it is.
export KUBECONFIG="$HOME/.kube/proxy"

hardlab login
hardlab kube login
if kubectl get pods 2>"$HOME/refused.txt"; then
  echo "expected the proxy to refuse a user without roles" >&2
  exit 1
fi
grep -q "do not allow Kubernetes access" "$HOME/refused.txt"
echo "refused by the proxy, as expected"
