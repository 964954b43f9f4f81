//! Frame capture for `--pcap-out`: a mismatch event that also carries the first bytes of its
//! frame. Only mismatches with `CAPTURE_SNAPLEN` set come here; nothing else pays for it. The
//! `EVENTS` ring and `CAPTURE_BUF`, where every event is built, live here too: below `audit.rs`,
//! which sends plain events through them.
//!
//! Verifier notes (messages as Linux 6.18 prints them, each found by undoing the workaround): the
//! record (144 + `MAX_SNAP` bytes) is built in a per-CPU map value, never on the stack (512 bytes,
//! nearly all already in use); on the stack it does not even reach the verifier, LLVM refuses
//! it: "Looks like the BPF stack limit is exceeded. Please move large on stack variables into BPF
//! per-cpu array map." The frame is copied with the hook's load-bytes helper (which also reads the
//! fragments of multi-buffer XDP frames) straight into that buffer, with a length provably in
//! [1, `MAX_SNAP`]: min(snaplen, frame length) alone is rejected ("R4 invalid zero-sized read:
//! u64=[0,256]" with `--snaplen 256`: the verifier cannot know a frame is never empty, aya#1207),
//! so the length goes through the same `((n - 1) & (MAX - 1)) + 1` mask as the tail in `sum.rs`.
//! `bpf_ringbuf_reserve` needs a constant size ("R2 is not a known constant'", quote and all, for
//! `reserve_bytes` of the record's length), so the record goes out with `bpf_ringbuf_output`,
//! whose length may vary: the header and the bytes captured, never the whole staging buffer (one
//! extra copy, only here).

use core::ptr::addr_of_mut;

use aya_ebpf::{
    Global,
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use checksum_common::{
    Counters,
    event::{CAPTURE_HEADER_LEN, CaptureRecord, MAX_SNAP},
    source::DEFAULT_RING_BYTES,
};

use crate::{packet::Packet, parse};

/// Mismatch events of every source, plain (`audit::emit`) or with their frame's bytes (`send`):
/// one ring for the whole run, so that one reader drains it and its size is one setting
/// (`--ring-buffer-size`, set with `set_max_entries` at load time).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Per-CPU staging area for capture records (`send`): far too big for the stack, and
/// `bpf_ringbuf_reserve` only takes constant sizes, while a record is sent with only the bytes
/// captured. `audit::emit` builds every event at its head, capture or not.
#[map]
pub static CAPTURE_BUF: PerCpuArray<CaptureRecord> = PerCpuArray::with_max_entries(1, 0);

/// Frame bytes each mismatch event carries (`--snaplen` with `--pcap-out`); 0, the default, sends
/// plain `ChecksumEvent`s. User space clamps it to `MAX_SNAP`, the kernel clamps it again.
#[unsafe(no_mangle)]
pub static CAPTURE_SNAPLEN: Global<u32> = Global::new(0);

#[expect(
    clippy::cast_possible_truncation,
    reason = "MAX_SNAP fits in 16 bits (asserted in checksum-common)"
)]
const MAX: u32 = MAX_SNAP as u32;

/// Sends the event already written at the head of `rec` (this CPU's `CAPTURE_BUF` value) with the
/// first min(`snaplen`, frame length, `MAX_SNAP`) bytes of the frame. A record the ring buffer has
/// no room for is counted in `events_lost`, like a plain event.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "cap_len <= MAX_SNAP, which fits in 16 bits; l3_off is at most a few VLAN tags in"
)]
pub fn send<P: Packet>(pkt: &P, snaplen: u32, rec: *mut CaptureRecord, c: &mut Counters) {
    let frame_len = pkt.len();
    let mut want = if snaplen < frame_len {
        snaplen
    } else {
        frame_len
    };
    if want > MAX {
        want = MAX;
    }
    // `want` is in [1, MAX] here (frames are at least an Ethernet header long), so the mask
    // changes nothing but gives the verifier the lower bound it cannot infer.
    let n = (want.wrapping_sub(1) & (MAX - 1)) + 1;
    // SAFETY: a per-CPU array value, only ever touched by this CPU; `n` <= MAX_SNAP fits `data`.
    let copied = unsafe {
        let data = addr_of_mut!((*rec).data).cast::<u8>();
        pkt.load_raw(0, data, n)
    };
    let cap_len = if copied { n } else { 0 };
    // Where the (outer) IP header starts, recomputed here rather than carried down from the
    // parser so the path without capture keeps its registers and stack.
    let l3_off = parse::link_layer(pkt).map_or(0, |(_, off)| off);
    // SAFETY: `rec` is this CPU's CAPTURE_BUF value, valid and used by no one else during this run;
    // the fields are written in place through raw pointers, no reference to it is formed.
    unsafe {
        addr_of_mut!((*rec).frame_len).write(frame_len);
        addr_of_mut!((*rec).cap_len).write(cap_len as u16);
        addr_of_mut!((*rec).l3_off).write(l3_off as u16);
    }
    let size = CAPTURE_HEADER_LEN + cap_len as usize;
    // SAFETY: `size` <= size_of::<CaptureRecord>(), all of it initialized above or by the copy.
    let bytes = unsafe { core::slice::from_raw_parts(rec.cast::<u8>().cast_const(), size) };
    if EVENTS.output(bytes, 0).is_err() {
        c.events_lost += 1;
    }
}
