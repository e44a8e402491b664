#!/usr/bin/env bash
# Build the images tether:dev and tether-whoami:dev locally: Tether linked statically (glibc, crt-static) in a FROM scratch
# image. Nothing is pulled, so it works on a machine without any registry.
#
#   docker/build-image.sh            # builds tether:dev, then tether-whoami:dev on top of it
set -euo pipefail
cd "$(dirname "$0")/.."
tag="tether:dev"
host="$(rustc -vV | sed -n 's/^host: //p')"
echo "building a static tether for $host" >&2
# With the etcd store (--store etcd://...), as the docs show it.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$host" -p tether --features etcd
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "${CARGO_TARGET_DIR:-target}/$host/release/tether" "$ctx/tether"
strip "$ctx/tether" 2>/dev/null || true
cp docker/Dockerfile "$ctx/Dockerfile"
if ! out="$(DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$ctx" 2>&1)"; then
  echo "$out" >&2
  exit 1
fi
cp docker/whoami.Dockerfile "$ctx/Dockerfile"
if ! out="$(DOCKER_BUILDKIT=0 docker build --quiet --tag tether-whoami:dev "$ctx" 2>&1)"; then
  echo "$out" >&2
  exit 1
fi
size="$(docker image inspect --format '{{.Size}}' "$tag")"
echo "built $tag ($((size / 1024)) KiB) and tether-whoami:dev" >&2
