#!/usr/bin/env bash
# `make image`: builds the operator image on this machine without a registry or a Docker
# daemon. The binary is linked statically (glibc, crt-static) so the image can start FROM
# scratch; buildah assembles it, podman starts it to prove it runs.
#   IMAGE=librechat-operator:dev bash hack/image.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
IMAGE="${IMAGE:-localhost/librechat-operator:dev}"
TARGET_DIR="${IMAGE_TARGET_DIR:-target/static}"
export DEBIAN_FRONTEND=noninteractive

for tool in buildah podman; do
  command -v "$tool" >/dev/null || { apt-get update -qq; apt-get install -y -qq buildah podman >/dev/null; break; }
done

RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
  --target x86_64-unknown-linux-gnu --target-dir "$TARGET_DIR" --bin librechat-operator
BIN="$TARGET_DIR/x86_64-unknown-linux-gnu/release/librechat-operator"
file "$BIN" 2>/dev/null | grep -q 'statically linked' || ldd "$BIN" 2>&1 | grep -q 'not a dynamic' ||
  { echo "image: $BIN is not static" >&2; exit 1; }

ctr="$(buildah from scratch)"
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah copy --chmod 0755 "$ctr" "$BIN" /librechat-operator >/dev/null
# TLS to MongoDB Atlas, rediss:// and the like needs the usual CA bundle.
buildah copy "$ctr" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
buildah config --user 65532:65532 --entrypoint '["/librechat-operator"]' --cmd run \
  --label org.opencontainers.image.title=librechat-operator "$ctr"
buildah commit --quiet "$ctr" "$IMAGE" >/dev/null
echo "image: built $IMAGE ($(podman image inspect "$IMAGE" --format '{{.Size}}') bytes)"

# It starts, as a non-root user, and does its job offline.
podman run --rm --network none "$IMAGE" --version
podman run --rm --network none "$IMAGE" crds | grep -c 'kind: CustomResourceDefinition' | grep -qx 4
echo "image: runs as $(podman image inspect "$IMAGE" --format '{{.Config.User}}'), prints its CRDs"
