#!/usr/bin/env bash
# Build the images tether:dev and tether-whoami:dev locally: Tether linked statically (glibc, crt-static) in a FROM scratch
# image. Nothing is pulled, so it works on a machine without any registry.
#
#   docker/build-image.sh            # builds tether:dev, tether-whoami:dev on top of it, and
#                                    # tether-etcd:dev (Debian's etcd, for --store etcd://)
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
# tether-etcd:dev: Debian's etcd binary with the libraries it links, FROM scratch (no registry
# is needed, and none may be reachable). Skipped, saying so, where etcd is not installed.
if etcd_bin="$(command -v etcd)"; then
  ectx="$(mktemp -d)"
  trap 'rm -rf "$ctx" "$ectx"' EXIT
  mkdir -p "$ectx/root/usr/bin" "$ectx/root/var/lib/etcd"
  cp "$etcd_bin" "$ectx/root/usr/bin/etcd"
  for lib in $(ldd "$etcd_bin" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$ectx/root$(dirname "$lib")"
    cp -L "$lib" "$ectx/root$lib"
  done
  cp docker/etcd.Dockerfile "$ectx/Dockerfile"
  if ! out="$(DOCKER_BUILDKIT=0 docker build --quiet --tag tether-etcd:dev "$ectx" 2>&1)"; then
    echo "$out" >&2
    exit 1
  fi
  # sed reads all of it: `head -1` could exit first and, under pipefail, fail the build on SIGPIPE.
  etcd_built=", tether-etcd:dev ($("$etcd_bin" --version | sed -n 1p))"
else
  echo "no etcd binary (apt-get install etcd-server): tether-etcd:dev not built" >&2
  etcd_built=""
fi
size="$(docker image inspect --format '{{.Size}}' "$tag")"
echo "built $tag ($((size / 1024)) KiB), tether-whoami:dev${etcd_built}" >&2
