#!/usr/bin/env bash
# Gives you (your lab proxy's admin) a role mapping to system:masters (the talk's shortcut; never
# in production) and reaches the cluster: no new login, the proxy reads roles on every request.
# Runs in the lab node's terminal after step 1's hardlab login.
set -euo pipefail
set -a; . /etc/hardlab/client.env; set +a
export KUBECONFIG="$HOME/.kube/proxy"

cat > "$HOME/admins.yaml" <<YAML
roles:
  - name: kubernetes-admins
    kubernetes_labels: {"*": "*"}
    kubernetes_groups: ["system:masters"]
    max_session_ttl: 12h
users:
  - name: $HARDLAB_USER
    roles: [kubernetes-admins]
YAML
hardlab proxy apply "$HOME/admins.yaml"
kubectl get pods -A
kubectl get services -A
