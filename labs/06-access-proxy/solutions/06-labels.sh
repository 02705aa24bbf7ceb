#!/usr/bin/env bash
# Restricts bob's role to env=prod clusters; the env=dev lab cluster then refuses him.
# Runs on the learner's machine (where the hardlab CLI is), not on the node: the proxy steps
# act on hardlab itself. Needs HARDLAB_SERVER and HARDLAB_USER, and for each login the password in HARDLAB_PASSWORD
# and the current code from the authenticator app in HARDLAB_OTP (hardlab login reads both).
set -euo pipefail
export HARDLAB_HOME="$HOME/.hardlab-bob"
export KUBECONFIG="$HOME/.kube/config-bob"

cat > developers.yaml <<'YAML'
roles:
  - name: developer-read
    kubernetes_labels: {env: prod}
    kubernetes_groups: ["developer-read"]
    max_session_ttl: 8h
users:
  - name: bob
    roles: [developer-read]
YAML
hardlab proxy apply developers.yaml
sleep 6   # the proxy re-reads roles every 5 s
if kubectl get pods 2>refused.txt; then
  echo "bob must be refused on the env=dev cluster" >&2
  exit 1
fi
echo "refused on env=dev"
