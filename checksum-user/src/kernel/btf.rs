//! Structure offsets of the running kernel, read from its BTF (/sys/kernel/btf/vmlinux). Rust eBPF
//! has no CO-RE relocations yet, so user space resolves the few offsets the programs need and
//! passes them in as frozen globals. Only what that needs is parsed: the type and string sections,
//! and the members of structs and unions.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Names another file to read the kernel's structure layouts and drop reasons from, instead of
/// `VMLINUX` (the tests point it at a missing or an empty one).
pub const BTF_OVERRIDE: &str = "CHECKSUM_AUDIT_BTF";

/// Where the offsets of the skb state and the drop program come from: `VMLINUX`, or the file
/// `BTF_OVERRIDE` names. (aya reads the kernel's own BTF for loading, whatever this says.)
pub fn kernel_btf_path() -> std::path::PathBuf {
    std::env::var_os(BTF_OVERRIDE).map_or_else(|| VMLINUX.into(), std::path::PathBuf::from)
}

/// Offsets for following a packet to its network namespace (checksum-ebpf/src/netns.rs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetnsOffsets {
    /// `sk_buff.dev`
    pub skb_dev: u32,
    /// `xdp_buff.rxq`
    pub xdp_rxq: u32,
    /// `xdp_rxq_info.dev`
    pub rxq_dev: u32,
    /// `net_device.nd_net.net`
    pub dev_net: u32,
    /// `net.net_cookie`
    pub net_cookie: u32,
}

impl NetnsOffsets {
    pub fn of_running_kernel() -> Result<Self> {
        Self::of(&Btf::from_file(Path::new(VMLINUX))?)
    }

    /// The offsets in `btf`, or an error naming the first one it lacks.
    pub fn of(btf: &Btf) -> Result<Self> {
        let off = |s: &str, path: &[&str]| {
            btf.member_offset(s, path).with_context(|| {
                format!(
                    "this kernel's BTF has no {s}.{}: checksum-audit cannot tell network namespaces apart on it (audit one namespace per run)",
                    path.join(".")
                )
            })
        };
        Ok(Self {
            skb_dev: off("sk_buff", &["dev"])?,
            xdp_rxq: off("xdp_buff", &["rxq"])?,
            rxq_dev: off("xdp_rxq_info", &["dev"])?,
            dev_net: off("net_device", &["nd_net", "net"])?,
            net_cookie: off("net", &["net_cookie"])?,
        })
    }
}

/// What the `kfree_skb` program (checksum-ebpf/src/drops.rs) needs of the running kernel: the
/// checksum drop reasons by name, and where to find a packet's headers and device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropConfig {
    /// `(value, name without the SKB_DROP_REASON_ prefix)` of every `SKB_DROP_REASON_*CSUM*`.
    pub reasons: Vec<(u32, String)>,
    /// `sk_buff.head`
    pub skb_head: u32,
    /// `sk_buff.network_header`
    pub skb_network_header: u32,
    /// `sk_buff.transport_header`
    pub skb_transport_header: u32,
    /// `sk_buff.protocol`
    pub skb_protocol: u32,
    /// `net_device.ifindex`
    pub dev_ifindex: u32,
    /// `sk_buff.skb_iif`: the arrival device's ifindex, kept when `dev` is cleared (a datagram
    /// queued to a socket, dropped in `recvmsg`).
    pub skb_iif: u32,
    /// `sk_buff.sk`, and `sock.__sk_common.skc_net.net`: the namespace of a packet without a
    /// device, from its socket.
    pub skb_sk: u32,
    pub sock_net: u32,
    /// `task_struct.nsproxy` and `nsproxy.net_ns`: the namespace of the task that drops a
    /// datagram in `recvmsg`, when neither device nor socket is left on it.
    pub task_nsproxy: u32,
    pub nsproxy_net: u32,
    /// The device and namespace chain, as for auditing several namespaces.
    pub netns: NetnsOffsets,
}

/// The prefix of every `enum skb_drop_reason` enumerator.
const DROP_REASON_PREFIX: &str = "SKB_DROP_REASON_";

impl DropConfig {
    /// From `btf`; an error says what is missing (no drop reasons, none about checksums, a field).
    pub fn of(btf: &Btf) -> Result<Self> {
        let all = btf.enum_values("skb_drop_reason").context(
            "this kernel's BTF has no enum skb_drop_reason (drop reasons need Linux >= 5.17)",
        )?;
        let reasons: Vec<(u32, String)> = all
            .into_iter()
            .filter_map(|(name, value)| {
                let short = name.strip_prefix(DROP_REASON_PREFIX)?;
                (short.contains("CSUM") && short != "MAX")
                    .then(|| (u32::try_from(value).ok(), short.to_owned()))
                    .and_then(|(v, n)| Some((v?, n)))
            })
            .collect();
        if reasons.is_empty() {
            bail!("this kernel's enum skb_drop_reason has no checksum reason (*CSUM*)");
        }
        let off = |s: &str, path: &[&str]| {
            btf.member_offset(s, path)
                .with_context(|| format!("this kernel's BTF has no {s}.{}", path.join(".")))
        };
        Ok(Self {
            reasons,
            skb_head: off("sk_buff", &["head"])?,
            skb_network_header: off("sk_buff", &["network_header"])?,
            skb_transport_header: off("sk_buff", &["transport_header"])?,
            skb_protocol: off("sk_buff", &["protocol"])?,
            dev_ifindex: off("net_device", &["ifindex"])?,
            skb_iif: off("sk_buff", &["skb_iif"])?,
            skb_sk: off("sk_buff", &["sk"])?,
            sock_net: off("sock", &["__sk_common", "skc_net", "net"])?,
            task_nsproxy: off("task_struct", &["nsproxy"])?,
            nsproxy_net: off("nsproxy", &["net_ns"])?,
            netns: NetnsOffsets::of(btf)?,
        })
    }

    /// The name of reason `value` (e.g. `TCP_CSUM`).
    pub fn reason_name(&self, value: u32) -> Option<&str> {
        self.reasons
            .iter()
            .find(|(v, _)| *v == value)
            .map(|(_, name)| name.as_str())
    }
}

/// Where the TC programs find the skb's checksum state (checksum-ebpf/src/skb.rs): the start of
/// the `SKB_WINDOW` bytes of `struct sk_buff` they read, and each field's place in that window.
/// These are the values of the programs' frozen globals of the same names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkbLayout {
    /// `OFF_SKB_WINDOW`: byte offset in `sk_buff` of the window (8-aligned).
    pub window: u32,
    /// `SKB_CSUM`: the `csum` union (`csum_start`, then `csum_offset`), 4-aligned in the window.
    pub csum: u32,
    /// `SKB_NETWORK_HEADER`, 2-aligned in the window.
    pub network_header: u32,
    /// `SKB_IP_SUMMED`, `SKB_CSUM_LEVEL`, `SKB_ENCAP`: bitfields.
    pub ip_summed: BitField,
    pub csum_level: BitField,
    pub encapsulation: BitField,
}

/// A bitfield of at most 8 bits that lies in one byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BitField {
    /// Byte offset (in the window, once in `SkbLayout`).
    pub byte: u32,
    /// Bits to shift the byte right by (little-endian: bit offset 0 is the lowest bit).
    pub shift: u32,
    pub bits: u32,
}

impl BitField {
    /// The programs' encoding: byte | shift << 8 | mask << 16.
    pub const fn encoded(self) -> u32 {
        self.byte | self.shift << 8 | ((1 << self.bits) - 1) << 16
    }

    /// The field's value in `bytes` (tests read a real skb's bytes with it).
    pub fn read(self, bytes: &[u8]) -> u8 {
        let mask = u8::try_from((1u16 << self.bits) - 1).unwrap_or(u8::MAX);
        (bytes[self.byte as usize] >> self.shift) & mask
    }
}

impl SkbLayout {
    pub fn of_running_kernel() -> Result<Self> {
        Self::of(&Btf::from_file(&kernel_btf_path())?)
    }

    /// The layout in `btf`, or an error naming what it lacks or what does not fit.
    pub fn of(btf: &Btf) -> Result<Self> {
        use checksum_common::source::SKB_WINDOW;
        let missing = |path: &str| {
            anyhow::anyhow!(
                "this kernel's BTF has no sk_buff.{path}: the skb's checksum state is not reported"
            )
        };
        let byte = |path: &str| {
            btf.member_offset("sk_buff", &[path])
                .ok_or_else(|| missing(path))
        };
        let bitfield = |path: &str| -> Result<BitField> {
            let (offset, bits) = btf
                .member_bits("sk_buff", &[path])
                .ok_or_else(|| missing(path))?;
            let field = BitField {
                byte: offset / 8,
                shift: offset % 8,
                bits,
            };
            if bits == 0 || field.shift + bits > 8 {
                bail!(
                    "sk_buff.{path} is not a bitfield within one byte ({bits} bits at bit {offset})"
                );
            }
            Ok(field)
        };
        let csum_start = byte("csum_start")?;
        let csum_offset = byte("csum_offset")?;
        let csum = byte("csum")?;
        if csum_offset != csum_start + 2 || csum != csum_start {
            bail!(
                "sk_buff.csum ({csum}), csum_start ({csum_start}) and csum_offset ({csum_offset}) are not one union of two u16"
            );
        }
        let network_header = byte("network_header")?;
        let (ip_summed, csum_level, encapsulation) = (
            bitfield("ip_summed")?,
            bitfield("csum_level")?,
            bitfield("encapsulation")?,
        );
        let bytes = [
            (csum, 4),
            (network_header, 2),
            (ip_summed.byte, 1),
            (csum_level.byte, 1),
            (encapsulation.byte, 1),
        ];
        let start = bytes.iter().map(|&(at, _)| at).min().unwrap_or(0) & !7;
        let end = bytes.iter().map(|&(at, len)| at + len).max().unwrap_or(0);
        if end - start > SKB_WINDOW {
            bail!(
                "the skb's checksum fields span sk_buff bytes {start}..{end}, more than the {SKB_WINDOW} bytes the programs read"
            );
        }
        let (csum, network_header) = (csum - start, network_header - start);
        if csum % 4 != 0 || network_header % 2 != 0 {
            bail!("sk_buff.csum or network_header is misaligned");
        }
        let within = |f: BitField| BitField {
            byte: f.byte - start,
            ..f
        };
        Ok(Self {
            window: start,
            csum,
            network_header,
            ip_summed: within(ip_summed),
            csum_level: within(csum_level),
            encapsulation: within(encapsulation),
        })
    }
}

const KIND_INT: u8 = 1;
const KIND_STRUCT: u8 = 4;
const KIND_UNION: u8 = 5;
const KIND_ENUM: u8 = 6;
const KIND_ENUM64: u8 = 19;
/// Kinds that only qualify or rename another type: typedef, volatile, const, restrict, type tag.
const KIND_ALIASES: [u8; 5] = [8, 9, 10, 11, 18];

struct Member {
    name_off: u32,
    type_id: u32,
    /// In bits.
    offset: u32,
    /// A bitfield's size in bits with the struct's kind flag (0 for whole members; without the
    /// flag, a bitfield's size is in its `int` type instead).
    bitfield_size: u32,
}

struct Type {
    name_off: u32,
    kind: u8,
    /// The aliased type for `KIND_ALIASES`; the size in bytes for ints, structs and unions.
    #[expect(
        clippy::struct_field_names,
        reason = "BTF's name for it; `Member` has a `type_id` too"
    )]
    type_id: u32,
    /// For ints, the word after the type: bits 0-7 the size in bits, 16-23 the offset in bits.
    int_encoding: u32,
    members: Vec<Member>,
    /// Of an enum: each enumerator's name and value.
    enumerators: Vec<(u32, i64)>,
}

pub struct Btf {
    /// By type id; id 0 is `void`.
    types: Vec<Type>,
    strings: Vec<u8>,
}

impl Btf {
    pub fn from_file(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&data).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn parse(data: &[u8]) -> Result<Self> {
        let u32_at = |off: usize| -> Result<u32> {
            let b = data.get(off..off + 4).context("truncated BTF")?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if data.get(0..2) != Some(&[0x9f, 0xeb]) {
            bail!("not little-endian BTF");
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let types_start = hdr_len + type_off;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .context("truncated BTF strings")?
            .to_vec();
        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            type_id: 0,
            int_encoding: 0,
            members: Vec::new(),
            enumerators: Vec::new(),
        }];
        let mut at = types_start;
        while at < types_start + type_len {
            let (name_off, info, size_or_type) = (u32_at(at)?, u32_at(at + 4)?, u32_at(at + 8)?);
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = ((info >> 24) & 0x1f) as u8;
            let bitfields = info >> 31 == 1;
            let mut members = Vec::new();
            if kind == KIND_STRUCT || kind == KIND_UNION {
                for i in 0..vlen {
                    let m = at + i * 12;
                    let offset = u32_at(m + 8)?;
                    // With the kind flag, the top 8 bits hold a bitfield's size.
                    let (offset, bitfield_size) = if bitfields {
                        (offset & 0x00ff_ffff, offset >> 24)
                    } else {
                        (offset, 0)
                    };
                    members.push(Member {
                        name_off: u32_at(m)?,
                        type_id: u32_at(m + 4)?,
                        offset,
                        bitfield_size,
                    });
                }
            }
            let mut enumerators = Vec::new();
            if kind == KIND_ENUM {
                for i in 0..vlen {
                    let e = at + i * 8;
                    // Signed or not (the kind flag), values fit an i64 either way.
                    enumerators.push((u32_at(e)?, i64::from(u32_at(e + 4)?.cast_signed())));
                }
            } else if kind == KIND_ENUM64 {
                for i in 0..vlen {
                    let e = at + i * 12;
                    let value = u64::from(u32_at(e + 4)?) | (u64::from(u32_at(e + 8)?) << 32);
                    enumerators.push((u32_at(e)?, value.cast_signed()));
                }
            }
            let int_encoding = if kind == KIND_INT { u32_at(at)? } else { 0 };
            at += match kind {
                1 | 14 | 17 => 4,              // int, var, decl tag
                3 => 12,                       // array
                4 | 5 | 15 | 19 => 12 * vlen,  // struct, union, datasec, enum64
                6 | 13 => 8 * vlen,            // enum, function prototype
                0 | 2 | 7..=12 | 16 | 18 => 0, // the rest carry nothing more
                other => bail!("unknown BTF kind {other}"),
            };
            if at > types_start + type_len {
                bail!("a type runs past the end of the type section");
            }
            types.push(Type {
                name_off,
                kind,
                type_id: size_or_type,
                int_encoding,
                members,
                enumerators,
            });
        }
        Ok(Self { types, strings })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    /// The struct or union behind `id`, through typedefs and qualifiers.
    fn composite(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..16 {
            let t = self.types.get(id as usize)?;
            if t.kind == KIND_STRUCT || t.kind == KIND_UNION {
                return Some(t);
            }
            if !KIND_ALIASES.contains(&t.kind) {
                return None;
            }
            id = t.type_id;
        }
        None
    }

    /// Byte offset of `path` (member names, each inside the previous one's type) in struct
    /// `name`. Members of anonymous structs and unions are found as if they were direct members,
    /// as C sees them. `None` for a bitfield that does not start on a byte (see `member_bits`).
    pub fn member_offset(&self, name: &str, path: &[&str]) -> Option<u32> {
        let (bits, _) = self.member_bits(name, path)?;
        (bits % 8 == 0).then_some(bits / 8)
    }

    /// Bit offset of `path` in struct `name`, as `member_offset`, and the member's size in bits
    /// if it is a bitfield (0 otherwise). Both BTF encodings of bitfields are read: the size in
    /// the member's offset word (the struct's kind flag, what pahole writes), or an `int` type
    /// whose own bit offset and size say it (older encoders).
    pub fn member_bits(&self, name: &str, path: &[&str]) -> Option<(u32, u32)> {
        let mut t = self
            .types
            .iter()
            .find(|t| t.kind == KIND_STRUCT && self.name(t.name_off) == name.as_bytes())?;
        let mut bits = 0;
        let mut size = 0;
        for (i, member) in path.iter().enumerate() {
            let (offset, type_id, bitfield_size) = self.find_member(t, member.as_bytes())?;
            bits += offset;
            size = bitfield_size;
            if i + 1 < path.len() {
                t = self.composite(type_id)?;
            } else if size == 0
                && let Some(int) = self.int(type_id)
            {
                let (int_bits, int_offset) =
                    (int.int_encoding & 0xff, (int.int_encoding >> 16) & 0xff);
                if int_offset != 0 || int_bits != int.type_id * 8 {
                    bits += int_offset;
                    size = int_bits;
                }
            }
        }
        Some((bits, size))
    }

    /// The enumerators (name, value) of enum `name`, in declaration order; `None` when the BTF has
    /// no such enum.
    pub fn enum_values(&self, name: &str) -> Option<Vec<(String, i64)>> {
        let t = self.types.iter().find(|t| {
            (t.kind == KIND_ENUM || t.kind == KIND_ENUM64)
                && self.name(t.name_off) == name.as_bytes()
        })?;
        Some(
            t.enumerators
                .iter()
                .map(|&(name_off, value)| {
                    (
                        String::from_utf8_lossy(self.name(name_off)).into_owned(),
                        value,
                    )
                })
                .collect(),
        )
    }

    /// The int behind `id`, through typedefs and qualifiers.
    fn int(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..16 {
            let t = self.types.get(id as usize)?;
            if t.kind == KIND_INT {
                return Some(t);
            }
            if !KIND_ALIASES.contains(&t.kind) {
                return None;
            }
            id = t.type_id;
        }
        None
    }

    /// Bit offset, type and bitfield size of member `name` of `t`, looking into anonymous members.
    fn find_member(&self, t: &Type, name: &[u8]) -> Option<(u32, u32, u32)> {
        for m in &t.members {
            if self.name(m.name_off) == name {
                return Some((m.offset, m.type_id, m.bitfield_size));
            }
            if m.name_off == 0
                && let Some(inner) = self.composite(m.type_id)
                && let Some((offset, type_id, size)) = self.find_member(inner, name)
            {
                return Some((m.offset + offset, type_id, size));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the running kernel's BTF is there to test against; without it the test skips,
    /// except in CI (`CI` set), where that is a failure.
    fn have_kernel_btf() -> bool {
        if Path::new(VMLINUX).exists() {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs a kernel with BTF"
        );
        eprintln!("skipped: no {VMLINUX}");
        false
    }

    #[test]
    fn resolves_the_running_kernels_offsets() {
        if !have_kernel_btf() {
            return;
        }
        let o = NetnsOffsets::of_running_kernel().expect("offsets");
        // Pointers and the u64 cookie are 8-aligned. `xdp_rxq_info.dev` is its struct's first
        // member (offset 0); the others are not.
        for off in [o.skb_dev, o.xdp_rxq, o.rxq_dev, o.dev_net, o.net_cookie] {
            assert_eq!(off % 8, 0, "{o:?}");
        }
        for off in [o.skb_dev, o.xdp_rxq, o.dev_net, o.net_cookie] {
            assert!(off > 0, "{o:?}");
        }
        let btf = Btf::from_file(Path::new(VMLINUX)).unwrap();
        // `xdp_buff.data` is its first member; a missing member or struct is None.
        assert_eq!(btf.member_offset("xdp_buff", &["data"]), Some(0));
        assert_eq!(btf.member_offset("xdp_buff", &["no_such_member"]), None);
        assert_eq!(btf.member_offset("no_such_struct", &["dev"]), None);
    }

    #[test]
    fn resolves_the_running_kernels_skb_layout() {
        if !have_kernel_btf() {
            return;
        }
        let l = SkbLayout::of_running_kernel().expect("layout");
        eprintln!("{l:?}");
        let btf = Btf::from_file(Path::new(VMLINUX)).unwrap();
        // What the programs will read is where BTF says the fields are.
        let at = |f: &str| btf.member_offset("sk_buff", &[f]).unwrap();
        assert_eq!(l.window % 8, 0);
        assert_eq!(l.window + l.csum, at("csum_start"));
        assert_eq!(l.window + l.csum + 2, at("csum_offset"));
        assert_eq!(l.window + l.network_header, at("network_header"));
        for (name, f) in [
            ("ip_summed", l.ip_summed),
            ("csum_level", l.csum_level),
            ("encapsulation", l.encapsulation),
        ] {
            let (bit, bits) = btf.member_bits("sk_buff", &[name]).unwrap();
            assert_eq!(
                ((l.window + f.byte) * 8 + f.shift, f.bits),
                (bit, bits),
                "{name}"
            );
        }
        // ip_summed and csum_level are 2-bit fields, encapsulation one bit, on every kernel.
        assert_eq!(
            (l.ip_summed.bits, l.csum_level.bits, l.encapsulation.bits),
            (2, 2, 1)
        );
        // Everything is inside the window the programs read.
        for end in [l.csum + 4, l.network_header + 2, l.ip_summed.byte + 1] {
            assert!(end <= checksum_common::source::SKB_WINDOW, "{l:?}");
        }
        // A bitfield that does not start on a byte has no byte offset.
        let (bit, _) = btf.member_bits("sk_buff", &["ip_summed"]).unwrap();
        assert_eq!(
            btf.member_offset("sk_buff", &["ip_summed"]),
            (bit % 8 == 0).then_some(bit / 8)
        );
    }

    #[test]
    fn bitfields_in_both_btf_encodings() {
        // Strings: 1 "u8", 4 "sk_buff", 12 "ip_summed", 22 "csum", 27 "csum_start", 38
        // "csum_offset", 50 "network_header", 65 "csum_level", 76 "encapsulation", 90 "u8b".
        let strings = b"\0u8\0sk_buff\0ip_summed\0csum\0csum_start\0csum_offset\0network_header\0csum_level\0encapsulation\0u8b\0";
        let kind_flag = 1 << 31;
        let types = [
            // [1] u8; [2] u16 (name "u8", it does not matter).
            words(&[1, 1 << 24, 1, 8]),
            words(&[1, 1 << 24, 2, 16]),
            // [3] struct { u16 csum_start; u16 csum_offset; }
            words(&[0, (4 << 24) | 2, 4, 27, 2, 0, 38, 2, 16]),
            // [4] union { u16 csum; struct [3]; } (csum is 4 bytes in the kernel; size is not
            // checked here)
            words(&[0, (5 << 24) | 2, 4, 22, 2, 0, 0, 3, 0]),
            // [5] anonymous struct, kind flag: u8 ip_summed:2 at bit 5, u8 csum_level:2 at bit
            // 14, u8 encapsulation:1 at bit 20, the union at byte 8, network_header at byte 52.
            words(&[
                0,
                kind_flag | (4 << 24) | 5,
                56,
                12,
                1,
                (2 << 24) | 0x5,
                65,
                1,
                (2 << 24) | 0xe,
                76,
                1,
                (1 << 24) | 0x14,
                0,
                4,
                64,
                50,
                2,
                416,
            ]),
            // [6] union { struct [5]; }
            words(&[0, (5 << 24) | 1, 56, 0, 5, 0]),
            // [7] struct sk_buff { 128 bytes of something; union [6]; } (224 bytes)
            words(&[4, (4 << 24) | 2, 224, 90, 1, 0, 0, 6, 1024]),
        ]
        .concat();
        let btf = Btf::parse(&blob(&types, strings)).expect("parse");
        assert_eq!(btf.member_bits("sk_buff", &["ip_summed"]), Some((1029, 2)));
        assert_eq!(btf.member_bits("sk_buff", &["csum_level"]), Some((1038, 2)));
        assert_eq!(btf.member_bits("sk_buff", &["csum_start"]), Some((1088, 0)));
        assert_eq!(btf.member_offset("sk_buff", &["ip_summed"]), None);
        let l = SkbLayout::of(&btf).expect("layout");
        assert_eq!(
            l,
            SkbLayout {
                window: 128,
                csum: 8,
                network_header: 52,
                ip_summed: BitField {
                    byte: 0,
                    shift: 5,
                    bits: 2
                },
                csum_level: BitField {
                    byte: 1,
                    shift: 6,
                    bits: 2
                },
                encapsulation: BitField {
                    byte: 2,
                    shift: 4,
                    bits: 1
                },
            }
        );
        // The programs' encoding, and reading a value back: ip_summed PARTIAL (3) in byte 0.
        assert_eq!(l.ip_summed.encoded(), 0x0003_0500);
        assert_eq!(l.ip_summed.read(&[3 << 5 | 0b1_0101]), 3);

        // The older encoding: no kind flag, the bits in an int type of their own. [8] is an
        // int of 8 bits with 2 bits at bit offset 5; a struct whose ip_summed has that type.
        let older = [
            types.clone(),
            words(&[90, 1 << 24, 1, (5 << 16) | 2]),
            words(&[12, (4 << 24) | 1, 1, 12, 8, 1024]),
        ]
        .concat();
        let btf = Btf::parse(&blob(&older, strings)).expect("parse");
        // Struct "ip_summed" (string 12) holds member ip_summed at byte 128, bits 5-6.
        assert_eq!(
            btf.member_bits("ip_summed", &["ip_summed"]),
            Some((1029, 2))
        );
    }

    #[test]
    fn a_layout_that_does_not_fit_is_refused() {
        // An sk_buff without any checksum field.
        let strings = b"\0int\0sk_buff\0dev\0";
        let types = [
            words(&[1, 1 << 24, 8, 64]),
            words(&[5, (4 << 24) | 1, 8, 13, 1, 0]),
        ]
        .concat();
        let btf = Btf::parse(&blob(&types, strings)).expect("parse");
        let err = SkbLayout::of(&btf).unwrap_err().to_string();
        assert!(err.contains("no sk_buff.csum_start"), "{err}");
    }

    /// A BTF blob: `types` (each already encoded) and a string table.
    fn blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
        let mut b = vec![0x9f, 0xeb, 1, 0];
        for v in [
            24,
            0,
            u32::try_from(types.len()).unwrap(),
            u32::try_from(types.len()).unwrap(),
            u32::try_from(strings.len()).unwrap(),
        ] {
            b.extend(v.to_le_bytes());
        }
        b.extend(types);
        b.extend(strings);
        b
    }

    fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn members_are_found_through_anonymous_unions_and_typedefs() {
        // Strings: 1 "int", 5 "sk_buff", 13 "dev", 17 "pnet", 22 "net".
        let strings = b"\0int\0sk_buff\0dev\0pnet\0net\0";
        let types = [
            // [1] int, 8 bytes.
            words(&[1, 1 << 24, 8, 64]),
            // [2] struct pnet { int net; } (8 bytes).
            words(&[17, (4 << 24) | 1, 8, 22, 1, 0]),
            // [3] typedef pnet_t = [2].
            words(&[17, 8 << 24, 2]),
            // [4] anonymous union { int dev; } (8 bytes).
            words(&[0, (5 << 24) | 1, 8, 13, 1, 0]),
            // [5] struct sk_buff { int a; union { int dev; }; pnet_t p; } (24 bytes).
            words(&[5, (4 << 24) | 3, 24, 1, 1, 0, 0, 4, 64, 17, 3, 128]),
        ]
        .concat();
        let btf = Btf::parse(&blob(&types, strings)).expect("parse");
        assert_eq!(btf.member_offset("sk_buff", &["dev"]), Some(8));
        assert_eq!(btf.member_offset("sk_buff", &["pnet", "net"]), Some(16));
        assert_eq!(btf.member_offset("sk_buff", &["nope"]), None);
        // Everything past sk_buff.dev is missing: the error names the first lacking field.
        let err = NetnsOffsets::of(&btf).unwrap_err().to_string();
        assert!(err.contains("no xdp_buff.rxq"), "{err}");
        assert!(err.contains("one namespace per run"), "{err}");
    }

    #[test]
    fn resolves_the_running_kernels_checksum_drop_reasons() {
        if !have_kernel_btf() {
            return;
        }
        let btf = Btf::from_file(Path::new(VMLINUX)).unwrap();
        let c = DropConfig::of(&btf).expect("drop config");
        let names: Vec<&str> = c.reasons.iter().map(|(_, n)| n.as_str()).collect();
        for want in ["TCP_CSUM", "UDP_CSUM", "IP_CSUM"] {
            assert!(names.contains(&want), "{names:?}");
        }
        // Numbers come from BTF, and differ from the names' order.
        let tcp = c.reasons.iter().find(|(_, n)| n == "TCP_CSUM").unwrap().0;
        assert_eq!(c.reason_name(tcp), Some("TCP_CSUM"));
        assert_eq!(c.reason_name(u32::MAX), None);
        // `network_header` and `transport_header` are 16-bit offsets next to each other.
        assert_eq!(c.skb_network_header, c.skb_transport_header + 2, "{c:?}");
        assert!(c.reasons.len() <= checksum_common::drop::MAX_DROP_REASONS);
    }

    #[test]
    fn enums_are_read_and_a_missing_or_checksum_free_reason_enum_is_an_error() {
        // Strings: 1 "skb_drop_reason", 17 "SKB_DROP_REASON_NOT_SPECIFIED",
        // 47 "SKB_DROP_REASON_TCP_CSUM", 72 "SKB_DROP_REASON_MAX".
        let strings =
            b"\0skb_drop_reason\0SKB_DROP_REASON_NOT_SPECIFIED\0SKB_DROP_REASON_TCP_CSUM\0SKB_DROP_REASON_MAX\0";
        let with_csum = words(&[1, (6 << 24) | 3, 4, 17, 2, 47, 10, 72, 129]);
        let btf = Btf::parse(&blob(&with_csum, strings)).expect("parse");
        assert_eq!(
            btf.enum_values("skb_drop_reason").unwrap(),
            vec![
                ("SKB_DROP_REASON_NOT_SPECIFIED".to_owned(), 2),
                ("SKB_DROP_REASON_TCP_CSUM".to_owned(), 10),
                ("SKB_DROP_REASON_MAX".to_owned(), 129),
            ]
        );
        // The reasons resolve, but this blob has no sk_buff: the error names the field.
        let err = DropConfig::of(&btf).unwrap_err().to_string();
        assert!(err.contains("sk_buff.head"), "{err}");
        // An enum without a checksum reason, and no enum at all.
        let without = words(&[1, (6 << 24) | 1, 4, 17, 2]);
        let err = DropConfig::of(&Btf::parse(&blob(&without, strings)).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no checksum reason"), "{err}");
        let err = DropConfig::of(&Btf::parse(&blob(&[], b"\0")).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no enum skb_drop_reason"), "{err}");
        // ENUM64 values.
        let wide = words(&[1, (19 << 24) | 1, 8, 47, 0xffff_fffe, 1]);
        let btf = Btf::parse(&blob(&wide, strings)).unwrap();
        assert_eq!(
            btf.enum_values("skb_drop_reason").unwrap(),
            vec![("SKB_DROP_REASON_TCP_CSUM".to_owned(), 0x1_ffff_fffe)]
        );
    }

    #[test]
    fn refuses_what_is_not_btf() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0]).is_err());
        assert!(Btf::parse(&[0u8; 64]).is_err());
        // A type section that runs past the end, and a kind that does not exist.
        assert!(Btf::parse(&blob(&words(&[1, (4 << 24) | 1, 8]), b"\0")).is_err());
        assert!(Btf::parse(&blob(&words(&[1, 30 << 24, 8]), b"\0")).is_err());
    }
}
