# shellcheck shell=bash
# Shared by node.sh and image.sh (sourced): a dockerd of our own under DIR that touches no
# interface and no firewall rule, running containers through runc-wrapper.py. Both scripts run
# inside a network and mount namespace of their own (see node.sh).
K8S_LIB_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

docker_() { docker -H "unix://$DIR/docker.sock" "$@"; }

# The cgroup parent is DIR's name, so that the test can remove the containers' cgroups by name.
dockerd_args() {
  echo --data-root="$DIR/docker" --exec-root="$DIR/docker-exec" -H "unix://$DIR/docker.sock" \
    --pidfile="$DIR/docker.pid" --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    --userland-proxy=false --cgroup-parent="/$(basename "$DIR")" \
    --add-runtime "csa=$K8S_LIB_HERE/runc-wrapper.py" --default-runtime=csa
}

wait_for() { # WHAT CMD...: up to 60 s
  local what=$1
  shift
  for _ in $(seq 600); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "k8s: $what did not come up; see $DIR/logs" >&2
  return 1
}

remove_containers() {
  [[ -S $DIR/docker.sock ]] || return 0
  local ids
  ids=$(docker_ ps -aq 2>/dev/null || true)
  # shellcheck disable=SC2086 # one word per container id
  [[ -z $ids ]] || docker_ rm -f $ids >/dev/null 2>&1 || true
}
