#!/usr/bin/env bash
# Builds the checksum-audit image FROM scratch with a dockerd of our own, checks that the binary
# runs in it (static: nothing else is in the image), and saves it as a docker archive:
#   image.sh DIR CONTEXT TAG OUT.tar
# `cargo xtask image` runs it inside a network namespace with only lo and a mount namespace of its
# own (as node.sh), and removes DIR afterwards; dockerd is stopped here on every exit path.
set -euo pipefail
DIR=$1 CONTEXT=$2 TAG=$3 OUT=$4
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
mkdir -p "$DIR"/{docker,docker-exec,logs}
# Paths the components hard-code whatever their flags (the dockershim socket in /run, containerd's
# shim sockets in /run/containerd/s, the kubelet's device-plugin and pod-resources sockets in
# /var/lib/kubelet): fresh, empty filesystems in this mount namespace only, so that nothing is left
# on the host and two clusters on one machine do not meet.
mount -t tmpfs -o mode=0755 csa-run /run
mount -t tmpfs -o mode=0755 csa-var-lib /var/lib

# shellcheck disable=SC2046 # dockerd_args prints whitespace-free words
dockerd $(dockerd_args) >"$DIR/logs/dockerd.log" 2>&1 &
dockerd_pid=$!
stop() {
  remove_containers
  kill -TERM "$dockerd_pid" 2>/dev/null || true
  wait "$dockerd_pid" 2>/dev/null || true
}
trap stop EXIT
wait_for dockerd docker_ version

# The classic builder: BuildKit would want a frontend image, and FROM scratch needs nothing.
DOCKER_BUILDKIT=0 docker_ build -q -t "$TAG" "$CONTEXT" >/dev/null
# Runs the image's own entry point: fails unless the binary is static (no loader in the image).
docker_ run --rm --network none "$TAG" --version
docker_ save -o "$OUT.tmp" "$TAG"
mv "$OUT.tmp" "$OUT"
