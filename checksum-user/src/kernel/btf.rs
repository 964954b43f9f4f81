//! Structure offsets of the running kernel, read from its BTF (/sys/kernel/btf/vmlinux). Rust eBPF
//! has no CO-RE relocations yet, so user space resolves the few offsets the programs need and
//! passes them in as frozen globals. Only what that needs is parsed: the type and string sections,
//! and the members of structs and unions.

use std::path::Path;

use anyhow::{Context as _, Result, bail};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

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

const KIND_STRUCT: u8 = 4;
const KIND_UNION: u8 = 5;
/// Kinds that only qualify or rename another type: typedef, volatile, const, restrict, type tag.
const KIND_ALIASES: [u8; 5] = [8, 9, 10, 11, 18];

struct Member {
    name_off: u32,
    type_id: u32,
    /// In bits.
    offset: u32,
}

struct Type {
    name_off: u32,
    kind: u8,
    /// The aliased type for `KIND_ALIASES`.
    #[expect(
        clippy::struct_field_names,
        reason = "BTF's name for it; `Member` has a `type_id` too"
    )]
    type_id: u32,
    members: Vec<Member>,
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
            members: Vec::new(),
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
                    members.push(Member {
                        name_off: u32_at(m)?,
                        type_id: u32_at(m + 4)?,
                        // With the kind flag, the top 8 bits hold a bitfield's size.
                        offset: if bitfields {
                            offset & 0x00ff_ffff
                        } else {
                            offset
                        },
                    });
                }
            }
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
                members,
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
    /// as C sees them.
    pub fn member_offset(&self, name: &str, path: &[&str]) -> Option<u32> {
        let mut t = self
            .types
            .iter()
            .find(|t| t.kind == KIND_STRUCT && self.name(t.name_off) == name.as_bytes())?;
        let mut bits = 0;
        for (i, member) in path.iter().enumerate() {
            let (offset, type_id) = self.find_member(t, member.as_bytes())?;
            bits += offset;
            if i + 1 < path.len() {
                t = self.composite(type_id)?;
            }
        }
        (bits % 8 == 0).then_some(bits / 8)
    }

    /// Bit offset and type of member `name` of `t`, looking into anonymous members.
    fn find_member(&self, t: &Type, name: &[u8]) -> Option<(u32, u32)> {
        for m in &t.members {
            if self.name(m.name_off) == name {
                return Some((m.offset, m.type_id));
            }
            if m.name_off == 0
                && let Some(inner) = self.composite(m.type_id)
                && let Some((offset, type_id)) = self.find_member(inner, name)
            {
                return Some((m.offset + offset, type_id));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_running_kernels_offsets() {
        if !Path::new(VMLINUX).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs a kernel with BTF"
            );
            eprintln!("skipped: no {VMLINUX}");
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
    fn refuses_what_is_not_btf() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0]).is_err());
        assert!(Btf::parse(&[0u8; 64]).is_err());
        // A type section that runs past the end, and a kind that does not exist.
        assert!(Btf::parse(&blob(&words(&[1, (4 << 24) | 1, 8]), b"\0")).is_err());
        assert!(Btf::parse(&blob(&words(&[1, 30 << 24, 8]), b"\0")).is_err());
    }
}
