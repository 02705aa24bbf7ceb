#!/usr/bin/env bash
# Exports bob's events from your lab proxy's audit log and has the server verify the chain.
# Runs in the lab node's terminal (your own login, the proxy's admin).
set -euo pipefail

hardlab audit export --user bob > "$HOME/bob.jsonl"
grep -q '"response_code":200' "$HOME/bob.jsonl"
grep -q '"response_code":403' "$HOME/bob.jsonl"
hardlab audit verify
