#!/usr/bin/env bash
# Restricts bob's role to env=prod clusters; the env=dev lab cluster then refuses him, with no
# new login. Runs in the lab node's terminal after step 5.
set -euo pipefail
set -a; . /etc/hardlab/client.env; set +a

cat > "$HOME/developers.yaml" <<'YAML'
roles:
  - name: developer-read
    kubernetes_labels: {env: prod}
    kubernetes_groups: ["developer-read"]
    max_session_ttl: 8h
users:
  - name: bob
    roles: [developer-read]
YAML
hardlab proxy apply "$HOME/developers.yaml"
if HARDLAB_HOME="$HOME/.hardlab-bob" KUBECONFIG="$HOME/.kube/proxy-bob" kubectl get pods 2>"$HOME/refused.txt"; then
  echo "bob must be refused on the env=dev cluster" >&2
  exit 1
fi
grep -q "hardlab proxy" "$HOME/refused.txt"
echo "refused on env=dev"
