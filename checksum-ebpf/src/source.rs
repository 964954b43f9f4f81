//! Sources: each audited interface and hook has a slot in `STATES`, where its settings and this
//! CPU's counters live. Finding a packet's slot is an array read in the common case, and a hash
//! lookup in a global function otherwise.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use checksum_common::{
    Hook, SourceKey, SourceState,
    source::{DIRECT_IFINDEXES, MAX_SOURCES, UNATTRIBUTED_SLOT},
};

use crate::{netns::NETNS_BY_DEVICE, packet::Packet};

/// The slot of every audited interface and hook in `STATES`, written by user space before it
/// attaches there. Read only when `SLOTS_BY_IFINDEX` cannot answer (several namespaces, a large
/// ifindex), by `csa_source_slot_*` (dispatch.rs), a global function: the key lives in its stack
/// frame, not in the programs' (512 bytes with the summing function's, nearly all in use), and
/// the verifier sees one scalar come back instead of a map value that may be null.
#[map]
static SOURCES: HashMap<SourceKey, u32> = HashMap::with_max_entries(MAX_SOURCES, 0);

/// The slots of each interface's hooks by ifindex (`[xdp, tc-ingress, tc-egress]`, 0 where not
/// audited), for runs in one namespace and ifindexes below `DIRECT_IFINDEXES`; `SOURCES` holds
/// every source, this only the ones it can. User space keeps both.
#[map]
static SLOTS_BY_IFINDEX: Array<[u32; 3]> = Array::with_max_entries(DIRECT_IFINDEXES, 0);

/// Settings and counters of each source, by slot; slot 0 (`UNATTRIBUTED_SLOT`) counts frames of
/// sources not in `SOURCES`. A map rather than globals because they differ per interface (its
/// class decides `SOURCE_REPORT_OFFLOAD`) and interfaces come and go while the programs stay
/// loaded. Per CPU, so counting needs no atomics.
#[map]
pub static STATES: PerCpuArray<SourceState> = PerCpuArray::with_max_entries(MAX_SOURCES, 0);

/// A packet whose slot can be looked up by its full key in a global function (`dispatch.rs`
/// implements it, per context type, with `lookup` as the body), for the reasons given at
/// `SOURCES`.
pub trait SlotLookup: Packet {
    fn lookup_slot(&self, hook: u32) -> u32;
}

/// The `STATES` slot of this packet's source: `direct_slot`, else `SlotLookup::lookup_slot`.
#[inline(always)]
pub fn slot<P: SlotLookup>(pkt: &P, hook: Hook) -> u32 {
    direct_slot(pkt, hook).unwrap_or_else(|| pkt.lookup_slot(hook as u32))
}

/// The fast path, inlined into the program: with one namespace ifindexes are unique, and the slot
/// of a small one is an array read (which the verifier inlines too). `None` sends the rest to the
/// global function's hash lookup: calling it for every frame cost a large share of a small
/// frame's time (bench/README.md).
#[inline(always)]
fn direct_slot<P: Packet>(pkt: &P, hook: Hook) -> Option<u32> {
    let ifindex = pkt.ifindex();
    if NETNS_BY_DEVICE.load() != 0 || ifindex >= DIRECT_IFINDEXES {
        return None;
    }
    let slots = SLOTS_BY_IFINDEX.get(ifindex)?;
    // `hook` is a constant here, so this is a constant offset (an index computed at run time is
    // bounds-checked by LLVM on a copy of the register it then uses, which the verifier rejects:
    // "R0 unbounded memory access").
    Some(match hook {
        Hook::Xdp => slots[0],
        Hook::TcIngress => slots[1],
        Hook::TcEgress => slots[2],
    })
}

/// The slot of a source by its full key (several namespaces, or a large ifindex): its entry in
/// `SOURCES`, or `UNATTRIBUTED_SLOT`. The body of `csa_source_slot_*`.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "`hook` is a `Hook` value passed as u32 to a global function"
)]
pub fn lookup<P: Packet>(pkt: &P, hook: u32) -> u32 {
    let key = SourceKey {
        netns: pkt.netns(),
        ifindex: pkt.ifindex(),
        hook: hook as u8,
        _pad: [0; 3],
    };
    // SAFETY: a map value, read once.
    unsafe { SOURCES.get(&key) }.map_or(UNATTRIBUTED_SLOT, |&slot| slot)
}
