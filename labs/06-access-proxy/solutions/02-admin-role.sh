#!/usr/bin/env bash
# Gives the admin a role mapping to system:masters (the talk's shortcut; never in production),
# logs in again and reaches the cluster.
# Runs on the learner's machine (where the hardlab CLI is), not on the node: the proxy steps
# act on hardlab itself. Needs HARDLAB_SERVER and HARDLAB_USER, and for each login the password in HARDLAB_PASSWORD
# and the current code from the authenticator app in HARDLAB_OTP (hardlab login reads both).
# hardlab proxy apply writes to hardlab's database: run it where the server's database is.
set -euo pipefail
: "${HARDLAB_SERVER:?the hardlab server's URL, as in your browser's address bar (the Access page shows it)}"
: "${HARDLAB_USER:?your hardlab user name}"
ADMIN_USER="$HARDLAB_USER"
: "${LAB_CLUSTER:=lab-$ADMIN_USER}"

cat > admins.yaml <<YAML
roles:
  - name: kubernetes-admins
    kubernetes_labels: {"*": "*"}
    kubernetes_groups: ["system:masters"]
    max_session_ttl: 12h
users:
  - name: $ADMIN_USER
    roles: [kubernetes-admins]
YAML
hardlab proxy apply admins.yaml
sleep 6   # the proxy re-reads roles every 5 s
hardlab login --server "$HARDLAB_SERVER" --user "$ADMIN_USER"
kubectl get pods -A
kubectl get services -A
