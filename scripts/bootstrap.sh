#!/usr/bin/env bash
# Idempotent setup for a fresh machine of this project's kind: installs exactly what is missing and is
# quick when everything is already there. RUSTUP_AUTO_INSTALL=0 is set on these machines, so the
# toolchains pinned in rust-toolchain.toml / xtask are installed here explicitly.
set -euo pipefail
cd "$(dirname "$0")/.."

STABLE=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)   # user side: aya 0.16 needs >= 1.98
NIGHTLY=$(tr -d '[:space:]' < checksum-ebpf/TOOLCHAIN)              # eBPF side: -Z build-std=core
BPF_LINKER_VERSION=0.13.0
DEBIAN_PACKAGES=(iproute2 iputils-ping bpftool tcpdump ethtool tshark tmux procps libcap2-bin iperf3 qemu-system-x86 busybox-static cpio xz-utils kmod)

log() { printf 'bootstrap: %s\n' "$*" >&2; }

have_toolchain() { rustup toolchain list | grep -q "^$1"; }

if ! have_toolchain "$STABLE"; then
  log "installing Rust $STABLE"
  rustup toolchain install "$STABLE" --profile minimal --component rustfmt,clippy
fi
for comp in rustfmt clippy; do
  rustup component list --toolchain "$STABLE" --installed | grep -q "^$comp" \
    || rustup component add --toolchain "$STABLE" "$comp"
done
if ! have_toolchain "$NIGHTLY"; then
  log "installing Rust $NIGHTLY with rust-src"
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src,clippy
fi
for comp in rust-src clippy; do
  rustup component list --toolchain "$NIGHTLY" --installed | grep -q "^$comp" \
    || rustup component add --toolchain "$NIGHTLY" "$comp"
done

# bpf-linker must use the same LLVM major as the nightly; link it against that nightly's own libLLVM.
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "building bpf-linker $BPF_LINKER_VERSION against $NIGHTLY's LLVM (takes a few minutes)"
  sysroot=$(rustc +"$NIGHTLY" --print sysroot)
  llvm_lib=$(basename "$(ls "$sysroot"/lib/libLLVM-*.so | head -n1)" .so)
  llvm_major=$(sed -E 's/^libLLVM-([0-9]+).*/\1/' <<<"$llvm_lib")
  RUSTFLAGS="-L $sysroot/lib -l dylib=${llvm_lib#lib} -C link-arg=-Wl,-rpath,$sysroot/lib" \
    cargo +"$STABLE" install "bpf-linker@$BPF_LINKER_VERSION" --locked --no-default-features \
    --features "llvm-$llvm_major,no-llvm-linking"
fi

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# helm and kubernetes-validate for the chart test (tests/chart.rs), cached in /var/cache/checksum-audit.
# The cluster binaries are built by the cluster test itself (scripts/k8s/build.sh, once, cached).
scripts/k8s/build.sh tools
log "ok"
