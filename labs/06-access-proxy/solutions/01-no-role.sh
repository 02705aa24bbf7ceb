#!/usr/bin/env bash
# Logs in as the admin (no role yet) and shows the proxy's refusal.
# Runs on the learner's machine (where the hardlab CLI is), not on the node: the proxy steps
# act on hardlab itself. Needs HARDLAB_SERVER and HARDLAB_USER, and for each login the password in HARDLAB_PASSWORD
# and the current code from the authenticator app in HARDLAB_OTP (hardlab login reads both).
set -euo pipefail
: "${HARDLAB_SERVER:?the hardlab server's URL, as in your browser's address bar (the Access page shows it)}"
: "${HARDLAB_USER:?your hardlab user name}"
ADMIN_USER="$HARDLAB_USER"
: "${LAB_CLUSTER:=lab-$ADMIN_USER}"

hardlab login --server "$HARDLAB_SERVER" --user "$ADMIN_USER"
hardlab kube login --cluster "$LAB_CLUSTER"
if kubectl get pods 2>refused.txt; then
  echo "expected the proxy to refuse a user without roles" >&2
  exit 1
fi
grep -q "do not allow Kubernetes access" refused.txt
echo "refused by the proxy, as expected"
