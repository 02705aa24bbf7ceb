#!/usr/bin/env bash
# Builds hardlab/testnode:latest, the unprivileged test fixture that behaves like a kubeadm
# control-plane node (see README.md). No image is pulled: the base is a debootstrap'd Debian
# bookworm rootfs, cached as a tarball, so reruns are fast and the build works offline from a
# Debian mirror. The build is skipped when the image already carries the hash of its inputs.
#
# Environment:
#   KUBEBUILDER_ASSETS   folder with kube-apiserver and kube-controller-manager (required)
#   HARDLAB_CACHE_DIR    where the rootfs tarball is cached (default /var/cache/hardlab)
#   DEBIAN_MIRROR        default http://deb.debian.org/debian
#   IMAGE                default hardlab/testnode:latest
#   FORCE=1              rebuild even when the inputs are unchanged
#   HARDLAB_BIN_DIR      optional folder holding `hardlab` and `hardlab-grade` built on this host
#                        (Debian bookworm, like the image), copied to /usr/local/bin in the image
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image=${IMAGE:-hardlab/testnode:latest}
cache_dir=${HARDLAB_CACHE_DIR:-/var/cache/hardlab}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# etcd, etcdctl, kubectl (Debian's kubernetes-client is v1.20, the same as the envtest API server),
# hexdump (bsdextrautils) and the tools a learner uses in the node's shell.
packages=etcd-server,etcd-client,kubernetes-client,bsdextrautils,vim,procps,bash,openssl,ca-certificates,curl,less,iproute2,bash-completion,tmux

die() { echo "testnode: $*" >&2; exit 1; }

assets=${KUBEBUILDER_ASSETS:-}
[[ -n "$assets" ]] || die "KUBEBUILDER_ASSETS is not set (a folder with kube-apiserver and kube-controller-manager)"
for bin in kube-apiserver kube-controller-manager; do
  [[ -x "$assets/$bin" ]] || die "$assets/$bin is missing or not executable"
done
bin_dir=${HARDLAB_BIN_DIR:-}
hardlab_bins=()
if [[ -n "$bin_dir" ]]; then
  for bin in hardlab hardlab-grade; do
    [[ -x "$bin_dir/$bin" ]] || die "HARDLAB_BIN_DIR: $bin_dir/$bin is missing or not executable"
    hardlab_bins+=("$bin_dir/$bin")
  done
fi
command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"

rootfs_key=$(printf '%s\n' "$suite" "$mirror" "$packages" | sha256sum | cut -c1-16)
base_image="hardlab/testnode-base:$rootfs_key"

inputs_hash=$(
  {
    echo "$rootfs_key"
    # Paths relative to this folder, so the hash does not depend on where the checkout lives.
    (cd "$here" && find Dockerfile rootfs -type f -print0 | sort -z | xargs -0 sha256sum)
    sha256sum "$assets/kube-apiserver" "$assets/kube-controller-manager" | awk '{print $1}'
    # A rebuilt hardlab must reach the image; without HARDLAB_BIN_DIR the hash is what it was before.
    if ((${#hardlab_bins[@]})); then
      echo "hardlab binaries:"
      sha256sum "${hardlab_bins[@]}" | awk '{print $1}'
    fi
  } | sha256sum | cut -c1-32
)

if [[ "${FORCE:-0}" != 1 ]] &&
  [[ "$(docker image inspect -f '{{index .Config.Labels "io.hardlab.inputs"}}' "$image" 2>/dev/null || true)" == "$inputs_hash" ]]; then
  echo "testnode: $image is up to date (inputs $inputs_hash)"
  exit 0
fi

if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  tarball="$cache_dir/testnode-rootfs-$suite-$rootfs_key.tar"
  if [[ ! -s "$tarball" ]]; then
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    mkdir -p "$cache_dir"
    work=$(mktemp -d "$cache_dir/rootfs.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    echo "testnode: debootstrap $suite with $packages (cached afterwards in $tarball)"
    debootstrap --variant=minbase --include="$packages" "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
      { tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
    # Package caches and lists only make the image bigger.
    rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
    tar -C "$work/root" --numeric-owner -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$work"
    trap - EXIT
  fi
  echo "testnode: importing $tarball as $base_image"
  docker import "$tarball" "$base_image" >/dev/null
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp -a "$here/Dockerfile" "$here/rootfs" "$context/"
mkdir -p "$context/rootfs/usr/local/bin"
cp "$assets/kube-apiserver" "$assets/kube-controller-manager" "$context/rootfs/usr/local/bin/"
if ((${#hardlab_bins[@]})); then
  cp "${hardlab_bins[@]}" "$context/rootfs/usr/local/bin/"
fi
chmod 0755 "$context"/rootfs/usr/local/bin/*
# The classic builder uses the local base image and never pulls it.
DOCKER_BUILDKIT=0 docker build -q \
  --build-arg "BASE=$base_image" \
  --label "io.hardlab.inputs=$inputs_hash" \
  -t "$image" "$context" >/dev/null
echo "testnode: built $image (inputs $inputs_hash)"
