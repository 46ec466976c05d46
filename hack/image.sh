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
ldd "$BIN" 2>&1 | grep -qE 'statically linked|not a dynamic' || { echo "image: $BIN is not static" >&2; exit 1; }
STRIPPED="$(mktemp)"; strip -o "$STRIPPED" "$BIN"

ctr="$(buildah from scratch)"
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; rm -f "$STRIPPED"' EXIT
buildah copy --chmod 0755 "$ctr" "$STRIPPED" /librechat-operator >/dev/null
# TLS to MongoDB Atlas, rediss:// and the like needs the usual CA bundle.
buildah copy "$ctr" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
buildah config --user 65532:65532 --entrypoint '["/librechat-operator"]' --cmd run \
  --label org.opencontainers.image.title=librechat-operator "$ctr"
buildah commit --quiet "$ctr" "$IMAGE" >/dev/null
echo "image: built $IMAGE ($(podman image inspect "$IMAGE" --format '{{.Size}}') bytes)"

# It starts, as a non-root user, and does its job offline. Some sandboxes forbid the
# setrlimit calls every OCI runtime makes; there the image's own filesystem is run with chroot
# as the image's user instead, which proves the content (static binary, CA bundle, user) but
# not the runtime configuration.
if podman run --rm --network none "$IMAGE" --version 2>/dev/null; then
  podman run --rm --network none "$IMAGE" crds | grep -c 'kind: CustomResourceDefinition' | grep -qx 4
  echo "image: started with podman as $(podman image inspect "$IMAGE" --format '{{.Config.User}}'); it prints its CRDs"
else
  echo "image: podman cannot start containers here ($(podman run --rm --network none "$IMAGE" --version 2>&1 | tail -n 1)); running the image's filesystem with chroot instead"
  run_ctr="$(buildah from "$IMAGE")"
  mnt="$(buildah mount "$run_ctr")"
  user="$(podman image inspect "$IMAGE" --format '{{.Config.User}}')"
  chroot --userspec="$user" "$mnt" /librechat-operator --version
  chroot --userspec="$user" "$mnt" /librechat-operator crds | grep -c 'kind: CustomResourceDefinition' | grep -qx 4
  buildah umount "$run_ctr" >/dev/null; buildah rm "$run_ctr" >/dev/null
  echo "image: the image's binary runs as user $user from the image's own root filesystem and prints its CRDs"
fi
