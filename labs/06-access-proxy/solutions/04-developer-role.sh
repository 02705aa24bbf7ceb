#!/usr/bin/env bash
# Invites the simulated user bob into your lab proxy and maps him to the Kubernetes group
# developer-read on env=dev clusters. Runs in the lab node's terminal after step 1's login.
set -euo pipefail
set -a; . /etc/hardlab/client.env; set +a

# bob's password and authenticator secret go to ~/.hardlab-simulated/bob.json: you play bob.
hardlab proxy invite bob
cat > "$HOME/developers.yaml" <<'YAML'
roles:
  - name: developer-read
    kubernetes_labels: {env: dev}
    kubernetes_groups: ["developer-read"]
    max_session_ttl: 8h
users:
  - name: bob
    roles: [developer-read]
YAML
hardlab proxy apply "$HOME/developers.yaml"
