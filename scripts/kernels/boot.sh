#!/usr/bin/env bash
# Boots one kernel of the matrix under QEMU (TCG: the KVM here is nested and stock kernels hang
# under it) with a busybox initramfs, runs a script inside and powers off. The guest's console is
# this script's stdout; its exit status is the script's (from the `CSA-EXIT n` line).
#
#   boot.sh SERIES SCRIPT [FILE...]
#
# FILEs (programs, test binaries, captures) are copied to the same absolute paths inside, with the
# shared libraries `ldd` names for them, so a test binary finds what it was built to find.
set -euo pipefail
CACHE=${CHECKSUM_AUDIT_KERNEL_CACHE:-/var/cache/checksum-audit/kernels}
series=$1 script=$2
shift 2
kdir=$CACHE/$series
[[ -f $kdir/vmlinuz ]] || { echo "boot: kernel $series not in $CACHE (scripts/kernels/fetch.sh)" >&2; exit 1; }
version=$(cat "$kdir/version")
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

# The modules the suite needs, with their dependencies from modules.dep, in load order. A kernel
# that builds one in has no .ko for it; modprobe-like order comes from the dep lines.
MODULES=(veth sch_ingress cls_bpf vxlan)
mods=$root/lib/modules/$version
mkdir -p "$mods"
declare -A seen=()
order=()
add_module() {
  local name=$1 line path dep
  line=$(grep -E "(^|/)${name//_/[_-]}\.ko(\.xz)?:" "$kdir/modules/modules.dep" || true)
  [[ -n $line ]] || return 0 # built in
  path=${line%%:*}
  [[ -n ${seen[$path]:-} ]] && return 0
  seen[$path]=1
  for dep in ${line#*:}; do
    dep=$(basename "$dep"); add_module "${dep%%.ko*}"
  done
  order+=("$path")
}
for m in "${MODULES[@]}"; do add_module "$m"; done
: >"$root/modules.order"
for path in "${order[@]}"; do
  out=$mods/$(basename "${path%.xz}")
  if [[ $path == *.xz ]]; then xz -dc "$kdir/modules/$path" >"$out"; else cp "$kdir/modules/$path" "$out"; fi
  echo "/lib/modules/$version/$(basename "$out")" >>"$root/modules.order"
done

copy() { # a file at its own path, with its libraries
  local f=$1 lib
  mkdir -p "$root$(dirname "$f")"
  cp -L "$f" "$root$f"
  { ldd "$f" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | while read -r lib; do
    [[ -e $root$lib ]] && continue
    mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"
  done
}
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run/netns,var/run,etc,bb}
cp /bin/busybox "$root/bb/busybox"
for applet in $(/bin/busybox --list); do [[ $applet == busybox ]] || ln -s busybox "$root/bb/$applet"; done
copy /bin/ip; copy /usr/bin/ping
for f in "$@"; do copy "$f"; done
cp "$script" "$root/suite.sh"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'hosts: files' >"$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
cat >"$root/init" <<'INIT'
#!/bb/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/bb HOME=/root
mkdir -p /root
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t bpf bpf /sys/fs/bpf; mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mkdir -p /run/netns  # the initramfs is a tmpfs already: /tmp keeps the files copied there
ulimit -l unlimited
while read -r m; do insmod "$m" || echo "CSA-INSMOD-FAILED $m"; done </modules.order
ip link set lo up
echo "CSA-KERNEL $(uname -r)"
/bb/sh /suite.sh
echo "CSA-EXIT $?"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$root.cpio.gz"
trap 'rm -rf "$root" "$root.cpio.gz"' EXIT
log=$(mktemp)
timeout "${CHECKSUM_AUDIT_BOOT_TIMEOUT:-1200}" qemu-system-x86_64 -accel tcg -cpu max -m "${CHECKSUM_AUDIT_GUEST_MEM:-3G}" -smp 1 \
  -nographic -no-reboot -kernel "$kdir/vmlinuz" -initrd "$root.cpio.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3" </dev/null | tee "$log" | tr -d '\r'
rc=$(tr -d '\r' <"$log" | sed -n 's/^CSA-EXIT \([0-9]*\)$/\1/p' | tail -n1)
rm -f "$log"
[[ -n $rc ]] || { echo "boot: $series: the guest ended without an exit status" >&2; exit 125; }
exit "$rc"
