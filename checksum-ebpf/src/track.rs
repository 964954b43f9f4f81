//! Tracked flows (`checksum_common::track`): a broken packet starts tracking its flow by both
//! halves of its 5-tuple, and while either half is tracked every hook reports the flow's
//! packets, good ones included, with their identity, so user space can follow one packet from
//! hook to hook and find where it broke.
//!
//! The map work is in global functions taking scalars: each has its own stack frame for the key,
//! which the audit programs' frame (nearly all of the 512 bytes it shares with the summing
//! function) has no room for, and the verifier checks each once.

use aya_ebpf::{
    Global,
    helpers::generated::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use checksum_common::track::{TRACKED_HALVES, TrackKey, Tracked};

use crate::parse::Segment;

/// Reports each tracked half allows (`DEFAULT_TRACK_REPORTS`); 0 turns tracking off and the
/// verifier prunes all of it (replay, benchmarks).
#[unsafe(no_mangle)]
static TRACK_REPORTS: Global<u32> = Global::new(0);

/// How long a half stays tracked.
#[unsafe(no_mangle)]
static TRACK_TTL_NS: Global<u64> = Global::new(0);

#[map]
static TRACKED: HashMap<TrackKey, Tracked> = HashMap::with_max_entries(TRACKED_HALVES, 0);

/// `csa_track_start`'s key and new value, off its stack. Its frame is the last of the chain
/// program -> `csa_audit_level_*` -> `csa_emit_*` -> `csa_track_start`, and Linux 6.1 rounds each
/// frame of a chain up to 32 bytes and refuses a chain over 512: with the 40 bytes of key and
/// value on the stack (a 64-byte frame rounded) it came to 544, "combined stack size of 4 calls
/// is 544. Too large". (6.18 rounds no longer.)
#[repr(C)]
struct StartScratch {
    key: TrackKey,
    value: Tracked,
}

#[map]
static TRACK_SCRATCH: PerCpuArray<StartScratch> = PerCpuArray::with_max_entries(1, 0);

/// Non-zero while anything may be tracked: set here on every start, reset by user space when
/// its sweep leaves the map empty. Read on every packet instead of two hash lookups (an array
/// read the verifier inlines).
#[map]
static TRACK_ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

/// Whether tracking is on for this run (a frozen global: off, everything here is pruned).
#[inline(always)]
pub fn on() -> bool {
    TRACK_REPORTS.load() != 0
}

#[inline(always)]
fn halves(seg: &Segment, src_port: u16, dst_port: u16) -> [(u64, u64, u64); 2] {
    let word = |a: &[u8; 16], at: usize| {
        u64::from_ne_bytes([
            a[at],
            a[at + 1],
            a[at + 2],
            a[at + 3],
            a[at + 4],
            a[at + 5],
            a[at + 6],
            a[at + 7],
        ])
    };
    [
        (
            TrackKey::meta(seg.family, seg.protocol, src_port),
            word(&seg.src, 0),
            word(&seg.src, 8),
        ),
        (
            TrackKey::meta(seg.family, seg.protocol, dst_port),
            word(&seg.dst, 0),
            word(&seg.dst, 8),
        ),
    ]
}

/// Starts tracking the flow of a broken packet. False when the map had no room (counted by the
/// caller as `tracking_full`).
#[inline(always)]
pub fn start(seg: &Segment, src_port: u16, dst_port: u16) -> bool {
    if !on() {
        return true;
    }
    let [(m0, a0, b0), (m1, a1, b1)] = halves(seg, src_port, dst_port);
    // Both, even when the first fails: either half alone still matches across a NAT.
    let first = csa_track_start(m0, a0, b0);
    let second = csa_track_start(m1, a1, b1);
    if let Some(active) = TRACK_ACTIVE.get_ptr_mut(0) {
        // SAFETY: an array map value; a plain store, racing ones all store 1.
        unsafe { *active = 1 };
    }
    first != 0 && second != 0
}

/// Whether the flow of this good packet is tracked and may be reported once more (which takes
/// one report from the half that matched).
#[inline(always)]
pub fn reports(seg: &Segment, src_port: u16, dst_port: u16) -> bool {
    if !on() || TRACK_ACTIVE.get(0).is_none_or(|a| *a == 0) {
        return false;
    }
    let [(m0, a0, b0), (m1, a1, b1)] = halves(seg, src_port, dst_port);
    csa_track_report(m0, a0, b0) != 0 || csa_track_report(m1, a1, b1) != 0
}

#[inline(always)]
fn key(meta: u64, hi: u64, lo: u64) -> TrackKey {
    let (h, l) = (hi.to_ne_bytes(), lo.to_ne_bytes());
    TrackKey::from_parts(
        meta,
        [
            h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], l[0], l[1], l[2], l[3], l[4], l[5],
            l[6], l[7],
        ],
    )
}

/// Tracks one half (a new entry, or one that expired, with a fresh budget); an entry still live
/// is left as it is, budget and all. 0 when the map is full.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_track_start(meta: u64, hi: u64, lo: u64) -> u32 {
    let Some(buf) = TRACK_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's value, used by no one else during this run.
    let buf = unsafe { &mut *buf };
    buf.key = key(meta, hi, lo);
    // SAFETY: bpf_ktime_get_ns takes no arguments and touches no memory.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(t) = TRACKED.get_ptr(&buf.key) {
        // SAFETY: a map value, read once.
        if unsafe { (*t).expires_ns } > now {
            return 1;
        }
    }
    buf.value = Tracked {
        expires_ns: now + TRACK_TTL_NS.load(),
        remaining: TRACK_REPORTS.load(),
        _pad: 0,
    };
    u32::from(TRACKED.insert(&buf.key, &buf.value, 0).is_ok())
}

/// 1 when the half is tracked, live, and had a report left (now taken).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_track_report(meta: u64, hi: u64, lo: u64) -> u32 {
    let key = key(meta, hi, lo);
    let Some(t) = TRACKED.get_ptr_mut(&key) else {
        return 0;
    };
    // SAFETY: a map value; CPUs racing on the budget may take one report too many, harmlessly.
    let t = unsafe { &mut *t };
    // SAFETY: as in `csa_track_start`.
    let now = unsafe { bpf_ktime_get_ns() };
    if t.expires_ns <= now || t.remaining == 0 {
        return 0;
    }
    t.remaining -= 1;
    1
}
