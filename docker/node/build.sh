#!/usr/bin/env bash
# Builds hardlab's lab node image on top of kind's node image, with `hardlab` and `hardlab-grade`
# compiled from this checkout (needs network access to docker.io, registry.k8s.io and crates.io).
# Usage: docker/node/build.sh [TAG]   (default hardlab/node:v1.36.1)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tag=${1:-hardlab/node:v1.36.1}
if ! git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "docker/node/build.sh: $root is not a git checkout; the build context is its tracked files" >&2
  exit 2
fi
context=$(mktemp -d)
list=$(mktemp)
trap 'rm -rf "$context" "$list"' EXIT
# The build context is the tracked files as they are in the working tree (edits included): never
# target/, node_modules/ or databases, which are untracked and would make the context gigabytes.
# Tracked files deleted in the working tree are left out rather than failing tar.
git -C "$root" ls-files -z | while IFS= read -r -d '' file; do
  if [[ -e "$root/$file" ]]; then printf '%s\0' "$file"; fi
done >"$list"
tar -C "$root" --null -T "$list" -cf - | tar -C "$context" -xf -
# The lab images (docker/node/images.txt), pulled here and saved into the context: the node
# carries them, so learners' clusters pull nothing at lab time. PRELOAD=0 leaves them out.
mkdir -p "$context/docker/node/images"
if [[ "${PRELOAD:-1}" != 0 ]]; then
  while read -r image _; do
    [[ -z "$image" || "$image" == \#* || "$image" == unloaded ]] && continue
    docker image inspect "$image" >/dev/null 2>&1 || docker pull "$image"
    docker save "$image" -o "$context/docker/node/images/$(printf '%s' "$image" | tr '/:' '__').tar"
  done <"$root/docker/node/images.txt"
fi
docker build -t "$tag" -f "$context/docker/node/Dockerfile" "$context"
echo "built $tag"
