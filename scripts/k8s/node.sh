#!/usr/bin/env bash
# One single-node Kubernetes cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# dockerd and the kubelet) for the cluster test, all state under DIR. Run it inside the test's own
# network namespace (only lo up: nothing can leave the machine) and a mount namespace of its own:
#   nsenter --net=/run/netns/NS unshare --mount --propagation slave bash scripts/k8s/node.sh DIR
# so that every mount the kubelet and dockerd make (secrets, overlays, /var/log) lives only there
# and is gone once the last process of the cluster exits. It writes DIR/ready when the apiserver
# answers, and runs until SIGTERM, then stops everything in order (containers first) and exits.
set -euo pipefail
DIR=$1
BIN=/var/cache/checksum-audit/k8s/v1.20.2/bin
HERE=$(cd "$(dirname "$0")" && pwd)
NODE=csa-node
# The node's address: an address of the test's own veth in the namespace (a loopback node IP leaves
# hostNetwork pods without an IP, and so without $(POD_IP)).
NODE_IP=${NODE_IP:-127.0.0.1}
# No component may reach an instance-metadata address (the kubelet's AWS credential provider tries
# at every start without this); the namespace has no route out anyway.
export AWS_EC2_METADATA_DISABLED=true
export PATH=$BIN:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

mkdir -p "$DIR"/{pki,logs,etcd,docker,docker-exec,kubelet,dockershim,varlog}
# The kubelet writes pod logs to /var/log/pods whatever its flags; keep them in DIR (this mount
# namespace only).
mount --bind "$DIR/varlog" /var/log
# Paths the components hard-code whatever their flags (the dockershim socket in /run, containerd's
# shim sockets in /run/containerd/s, the kubelet's device-plugin and pod-resources sockets in
# /var/lib/kubelet): fresh, empty filesystems in this mount namespace only, so that nothing is left
# on the host and two clusters on one machine do not meet.
mount -t tmpfs -o mode=0755 csa-run /run
mount -t tmpfs -o mode=0755 csa-var-lib /var/lib

# --- credentials: a CA, the apiserver's serving certificate, service-account keys, tokens --------
pki=$DIR/pki
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=csa-test-ca \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
  -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc\n' \
  "$NODE_IP" >"$pki/san.ext"
openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 2 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
admin_token=$(openssl rand -hex 16)
node_token=$(openssl rand -hex 16)
printf '%s,admin,admin,system:masters\n%s,system:node:%s,node,system:nodes\n' \
  "$admin_token" "$node_token" "$NODE" >"$pki/tokens.csv"
kubeconfig() { # FILE TOKEN
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: csa
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: "$pki/ca.crt"}
users:
- name: u
  user: {token: "$2"}
contexts:
- name: csa
  context: {cluster: csa, user: u}
current-context: csa
KC
}
kubeconfig "$DIR/admin.kubeconfig" "$admin_token"
kubeconfig "$DIR/kubelet.kubeconfig" "$node_token"

pids=()
start() { # NAME CMD...: in the background, logs in DIR/logs/NAME.log
  local name=$1
  shift
  "$@" >"$DIR/logs/$name.log" 2>&1 &
  pids+=($!)
  echo $! >"$DIR/logs/$name.pid"
}
stop_all() {
  trap - TERM INT
  # Containers first, so that no pod process outlives its runtime; then the rest, newest first.
  remove_containers
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pids[i]}" 2>/dev/null || true
  done
  wait || true
  exit 0
}
trap stop_all TERM INT

start etcd etcd --name default --data-dir "$DIR/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster default=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
wait_for etcd curl -fsS http://127.0.0.1:2379/health

start kube-apiserver kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=6443 --insecure-port=0 \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" --token-auth-file="$pki/tokens.csv" \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc \
  --authorization-mode=Node,RBAC --allow-privileged=true --endpoint-reconciler-type=none \
  --service-cluster-ip-range=10.96.0.0/28
wait_for kube-apiserver kubectl --kubeconfig "$DIR/admin.kubeconfig" get --raw /readyz

start kube-controller-manager kube-controller-manager --kubeconfig="$DIR/admin.kubeconfig" \
  --leader-elect=false --bind-address=127.0.0.1 --port=0 --secure-port=10257 \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --controllers='*,-nodeipam,-service,-route,-cloud-node-lifecycle'
start kube-scheduler kube-scheduler --kubeconfig="$DIR/admin.kubeconfig" --leader-elect=false \
  --bind-address=127.0.0.1 --port=0 --secure-port=10259

# dockerd touches no interface and no firewall rule, and runs containers through the wrapper.
# shellcheck disable=SC2046 # dockerd_args prints whitespace-free words
start dockerd dockerd $(dockerd_args)
wait_for dockerd docker_ version

# The pod sandbox image, FROM scratch with a static pause binary (cached next to the binaries).
pause=/var/cache/checksum-audit/k8s/pause
if [[ ! -x $pause/pause ]]; then
  mkdir -p "$pause"
  (cd "$HERE/pause" && GO111MODULE=off GOPROXY=off CGO_ENABLED=0 GOCACHE=/var/cache/checksum-audit/k8s/gocache \
    go build -ldflags "-s -w" -o "$pause/.pause.tmp" pause.go)
  mv "$pause/.pause.tmp" "$pause/pause"
fi
printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$pause/Dockerfile"
DOCKER_BUILDKIT=0 docker_ build -q -t csa-pause:1 "$pause" >/dev/null

# Pod networking for pods without hostNetwork: Debian's CNI plugins, a bridge inside this network
# namespace (created by the plugin here, never on the host) and addresses from a test subnet. Pods
# route everything through the bridge (isDefaultGateway), so Service addresses reach the node.
mkdir -p "$DIR/cni/net.d" "$DIR/cni/cache"
cat >"$DIR/cni/net.d/10-csa.conflist" <<CNI
{"cniVersion": "0.4.0", "name": "csa-pods", "plugins": [
  {"type": "bridge", "bridge": "csa-br0", "isGateway": true, "isDefaultGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$DIR/cni/ipam",
            "ranges": [[{"subnet": "${POD_SUBNET:-10.199.10.0/24}"}]]}}]}
CNI

start kubelet kubelet --kubeconfig="$DIR/kubelet.kubeconfig" --hostname-override="$NODE" \
  --container-runtime=docker --docker-endpoint="unix://$DIR/docker.sock" \
  --pod-infra-container-image=csa-pause:1 --experimental-dockershim-root-directory="$DIR/dockershim" \
  --root-dir="$DIR/kubelet" --cert-dir="$DIR/kubelet/pki" \
  --node-ip="$NODE_IP" --address=127.0.0.1 --healthz-bind-address=127.0.0.1 --read-only-port=0 \
  --client-ca-file="$pki/ca.crt" --anonymous-auth=false \
  --cgroup-driver=cgroupfs --cgroups-per-qos=false --enforce-node-allocatable= \
  --fail-swap-on=false --eviction-hard= --image-gc-high-threshold=100 --image-gc-low-threshold=99 \
  --network-plugin=cni --cni-conf-dir="$DIR/cni/net.d" --cni-bin-dir=/usr/lib/cni \
  --cni-cache-dir="$DIR/cni/cache"

touch "$DIR/ready"
# Until SIGTERM; a component that dies is seen by the test (node NotReady, rollout timeout).
while true; do sleep 1 & wait $! || true; done
