#!/usr/bin/env bash
# Builds hardlab's lab node image on top of kind's node image (needs network access to docker.io
# and registry.k8s.io). Usage: docker/node/build.sh [TAG]   (default hardlab/node:v1.36.1)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tag=${1:-hardlab/node:v1.36.1}
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$here/Dockerfile" "$here/profile.sh" "$context/"
# Only the lab content goes into the build context (not target/ or node_modules/).
mkdir -p "$context/labs"
if [[ -d "$root/labs" ]]; then cp -a "$root/labs/." "$context/labs/"; fi
docker build -t "$tag" "$context"
echo "built $tag"
