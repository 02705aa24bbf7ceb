#!/usr/bin/env bash
# Builds hardlab/grade, a container image holding only a statically linked hardlab-grade (and CA
# certificates for live grading over TLS), FROM scratch: nothing is pulled, so it builds offline.
#
# Environment:
#   IMAGE       default hardlab/grade:latest
#   PROFILE     cargo profile, default release (.ci/run uses dev to share the test build's time)
#   CARGO_TARGET_DIR  as cargo reads it (default target)
#
# The binary is linked statically against glibc (`-C target-feature=+crt-static`), so the image
# needs no libc. Host names in a kubeconfig are resolved by glibc's NSS, which a static binary
# cannot load: in this image, give API servers by IP address (static scans need no network).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
image=${IMAGE:-hardlab/grade:latest}
profile=${PROFILE:-release}
triple=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-$root/target}

die() { echo "grade image: $*" >&2; exit 1; }
command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"

# --target keeps these static artifacts apart from the host build (and RUSTFLAGS away from build
# scripts and proc macros, which must stay dynamic).
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --profile "$profile" \
  --target "$triple" -p hardlab-grader --bin hardlab-grade)
profile_dir=$profile
[[ "$profile" == dev ]] && profile_dir=debug
binary="$target_dir/$triple/$profile_dir/hardlab-grade"
[[ -x "$binary" ]] || die "$binary was not built"
# ldd lists libraries (`lib => path`) only for a dynamically linked binary.
if ldd "$binary" 2>&1 | grep -q '=>'; then
  die "$binary is dynamically linked: $(ldd "$binary" | tr '\n' ' ')"
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$here/Dockerfile" "$context/"
strip -o "$context/hardlab-grade" "$binary"
mkdir -p "$context/etc/ssl/certs"
if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
  cp /etc/ssl/certs/ca-certificates.crt "$context/etc/ssl/certs/"
else
  : >"$context/etc/ssl/certs/ca-certificates.crt"
fi
docker build --quiet -t "$image" "$context" >/dev/null
echo "grade image: built $image ($(du -h "$context/hardlab-grade" | cut -f1) binary)"
