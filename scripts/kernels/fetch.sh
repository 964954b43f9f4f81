#!/usr/bin/env bash
# Fetches Debian's kernel packages for the kernel matrix (`cargo xtask kernels`) into a cache outside
# the repository, idempotently: a kernel already unpacked there is not fetched again.
#
# The machine's own apt sources stay untouched: the other suites are read with a private apt state
# (its own sources list and lists directory), from the same mirror the machine's sources name.
#
# Out: $CACHE/<series>/{vmlinuz,modules/,version}
set -euo pipefail
CACHE=${CHECKSUM_AUDIT_KERNEL_CACHE:-/var/cache/checksum-audit/kernels}
HERE=$(cd "$(dirname "$0")" && pwd)

log() { printf 'kernels: %s\n' "$*" >&2; }

# series  suite  packages (the generic -amd64 flavour: the cloud flavour has no veth)
MATRIX=$(grep -v '^#' "$HERE/matrix")

need() { command -v "$1" >/dev/null || { log "missing $1 (scripts/bootstrap.sh installs it)"; exit 1; }; }
need apt-get; need dpkg-deb; need depmod

missing=()
while read -r series _suite _pkgs; do
  [[ -z $series ]] && continue
  [[ -f $CACHE/$series/vmlinuz && -f $CACHE/$series/version ]] || missing+=("$series")
done <<<"$MATRIX"
if ((${#missing[@]} == 0)); then
  log "cached in $CACHE: $(cd "$CACHE" && echo *)"
  exit 0
fi

mkdir -p "$CACHE"
state=$CACHE/.apt
mkdir -p "$state/lists/partial" "$state/archives/partial"
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[[ -n $uri ]] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[[ -n $uri ]] || { log "cannot find the Debian mirror in this machine's apt sources"; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
: >"$state/sources.list"
for suite in $(awk '{print $2}' <<<"$MATRIX" | sort -u); do
  echo "deb [signed-by=$keyring] $uri $suite main" >>"$state/sources.list"
done
apt_opts=(-o "Dir::Etc::sourcelist=$state/sources.list" -o Dir::Etc::sourceparts=-
  -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
log "reading the package lists of $(awk '{print $2}' <<<"$MATRIX" | sort -u | tr '\n' ' ')"
apt-get "${apt_opts[@]}" update -qq

for series in "${missing[@]}"; do
  read -r _ suite pkgs <<<"$(awk -v s="$series" '$1 == s' <<<"$MATRIX")"
  work=$(mktemp -d)
  log "fetching $series: $pkgs"
  (cd "$work" && apt-get "${apt_opts[@]}" download ${pkgs//,/ } >/dev/null)
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
  # 5.10 to 6.18 put the image in /boot; from 6.19 Debian's linux-binary puts it with the modules.
  vmlinuz=$(find "$work/root/boot" "$work/root/usr/lib/modules" -name "vmlinuz*" 2>/dev/null | head -n1 || true)
  [[ -n $vmlinuz ]] || { log "no vmlinuz in $pkgs"; exit 1; }
  # The packages ship no modules.dep (dpkg's postinst makes it): make it here, into the cache.
  moddir=$(find "$work/root" -path '*/lib/modules/*' -prune -type d | head -n1)
  # depmod -b BASE reads BASE/lib/modules/VERSION: BASE is the root or, from 6.19, root/usr.
  depmod -b "$(dirname "$(dirname "$(dirname "$moddir")")")" "$(basename "$moddir")"
  out=$CACHE/$series.tmp
  rm -rf "$out"; mkdir -p "$out"
  cp "$vmlinuz" "$out/vmlinuz"
  cp -a "$moddir" "$out/modules"
  basename "$moddir" >"$out/version"
  rm -rf "$work" "$CACHE/$series"
  mv "$out" "$CACHE/$series"
  log "$series: $(cat "$CACHE/$series/version")"
done
