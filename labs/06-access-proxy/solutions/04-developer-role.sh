#!/usr/bin/env bash
# Maps bob to the Kubernetes group developer-read on env=dev clusters.
# Runs on the learner's machine (where the hardlab CLI is), not on the node: the proxy steps
# act on hardlab itself. Needs HARDLAB_SERVER and HARDLAB_USER, and for each login the password in HARDLAB_PASSWORD
# and the current code from the authenticator app in HARDLAB_OTP (hardlab login reads both).
set -euo pipefail

cat > developers.yaml <<'YAML'
roles:
  - name: developer-read
    kubernetes_labels: {env: dev}
    kubernetes_groups: ["developer-read"]
    max_session_ttl: 8h
users:
  - name: bob
    roles: [developer-read]
YAML
hardlab proxy apply developers.yaml
