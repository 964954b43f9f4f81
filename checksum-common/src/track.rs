//! Tracked flows: when a hook sees a packet broken, its flow becomes tracked in one map every
//! hook shares, and while it is, every hook reports its packets, good ones included, so that the
//! next packets of the flow (TCP retransmits, more datagrams) show its whole path.
//!
//! A flow is tracked by each half of its 5-tuple (protocol, address and port of one side): a DNAT
//! rewrites one half and an SNAT the other, and the half it keeps still matches at the hooks
//! before and after the rewrite. Each half has its own report budget, so a half that many flows
//! share (a server's address and port) cannot flood the ring; the budget and an expiry bound
//! every entry, and user space sweeps expired ones (counting them).

/// Halves the map holds (two per tracked flow).
pub const TRACKED_HALVES: u32 = 4096;

/// Reports each tracked half allows by default: every hook a packet crosses takes one.
pub const DEFAULT_TRACK_REPORTS: u32 = 256;

/// How long a half stays tracked after the broken packet that started it, by default.
pub const DEFAULT_TRACK_TTL_NS: u64 = 10_000_000_000;

/// One half of a flow's 5-tuple. No padding: the whole key is hashed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TrackKey {
    /// `FAMILY_IPV4` or `FAMILY_IPV6`.
    pub family: u8,
    pub protocol: u8,
    /// Host order.
    pub port: u16,
    /// IPv4 addresses use the first 4 bytes.
    pub addr: [u8; 16],
}

impl TrackKey {
    /// The packed `family | protocol << 8 | port << 16` the programs pass around in one register.
    pub const fn meta(family: u8, protocol: u8, port: u16) -> u64 {
        family as u64 | (protocol as u64) << 8 | (port as u64) << 16
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "unpacks the fields `meta` packed"
    )]
    pub const fn from_parts(meta: u64, addr: [u8; 16]) -> Self {
        Self {
            family: meta as u8,
            protocol: (meta >> 8) as u8,
            port: (meta >> 16) as u16,
            addr,
        }
    }
}

/// A tracked half: until when, and how many reports it still allows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tracked {
    /// `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`) after which it is no longer tracked.
    pub expires_ns: u64,
    pub remaining: u32,
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a kernel-shared repr(C) struct, public for struct literals"
    )]
    pub _pad: u32,
}

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, no implicit padding, every bit pattern valid.
unsafe impl aya::Pod for TrackKey {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for Tracked {}

const _: () = assert!(core::mem::size_of::<TrackKey>() == 20);
const _: () = assert!(core::mem::size_of::<Tracked>() == 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        let k = TrackKey::from_parts(
            TrackKey::meta(4, 17, 5353),
            [10, 96, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        assert_eq!((k.family, k.protocol, k.port), (4, 17, 5353));
        assert_eq!(k.addr[..4], [10, 96, 0, 10]);
    }
}
