#!/usr/bin/env bash
# Exports bob's events and verifies the audit chain.
# Runs on the learner's machine (where the hardlab CLI is), not on the node: the proxy steps
# act on hardlab itself. Needs HARDLAB_SERVER and HARDLAB_USER, and for each login the password in HARDLAB_PASSWORD
# and the current code from the authenticator app in HARDLAB_OTP (hardlab login reads both).
set -euo pipefail

hardlab audit export --user bob > bob.jsonl
grep -q '"response_code":200' bob.jsonl
grep -q '"response_code":403' bob.jsonl
hardlab audit verify
