//! The socket buffer's own checksum state at TC: `skb->ip_summed`, `csum_start`/`csum_offset`
//! (the `csum` union), `csum_level`, `encapsulation` and `network_header`. `__sk_buff` exposes
//! none of them.
//!
//! Why `bpf_probe_read_kernel` on the context pointer, at offsets user space resolves from the
//! running kernel's BTF (checksum-user/src/kernel/btf.rs), as `netns.rs` already does for
//! `skb->dev` (a TC program's context is the kernel's `struct sk_buff`). Spiked on Linux 6.18:
//! - The kfunc `bpf_cast_to_kern_ctx` declared in Rust: rustc emits no BTF for `extern`
//!   functions (rust-lang/rust#161390), so aya cannot resolve the call: loading the object fails
//!   with `RelocationError { function: .., error: ExternNotFound { name: "bpf_cast_to_kern_ctx" } }`
//!   (without `--btf` the call is a plain BPF-to-BPF call to -1, which the verifier refuses: "the
//!   call stack of 9 frames is too deep"). Through a C helper compiled to bitcode by Debian's
//!   clang 14 and linked by bpf-linker, the extern keeps its BTF and the program loads (direct
//!   loads from the `sk_buff`, no helper call), but it needs clang in every build of the
//!   programs, a C file beside the Rust, the offsets from user space all the same (no CO-RE), and
//!   Linux >= 6.2: on older kernels the whole object fails to load (a strong extern aya cannot
//!   resolve). Not worth it for one helper call per packet.
//! - `bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY)` answers only whether the skb is
//!   `CHECKSUM_UNNECESSARY` (and its level): not PARTIAL, not COMPLETE, no offsets.
//! - The tracepoints `net:netif_receive_skb` / `net:net_dev_start_xmit` print `ip_summed`, but in
//!   another program, at another moment than the TC hook, and without `csum_start`.
//!
//! The fields lie close together (Linux 6.18: `ip_summed` at byte 128, `csum_start` at 136,
//! `network_header` at 180), so one read of `SKB_WINDOW` bytes fetches them all. It happens in a
//! global function, into a per-CPU buffer (see `SKB_WINDOW_BUF`). With `SKB_STATE` a frozen 0 (no
//! layout, or turned off) the call is pruned and every hook reports "unknown".

use aya_ebpf::{
    Global, bindings::__sk_buff, helpers::generated::bpf_probe_read_kernel, macros::map,
    maps::PerCpuArray,
};
use checksum_common::{
    event::{IP_SUMMED_UNKNOWN, IpSummed, SKB_ENCAPSULATION},
    source::SKB_WINDOW,
};

/// 1 when the TC programs read the skb's checksum state (`state`); 0, and that code is pruned,
/// when user space could not resolve the layout below or turned it off.
#[unsafe(no_mangle)]
static SKB_STATE: Global<u8> = Global::new(0);

/// Where `csa_skb_state` finds its fields, resolved by user space from the running kernel's BTF:
/// the byte of `struct sk_buff` where its `SKB_WINDOW`-byte read starts, then offsets in that
/// window: the `csum` union (`csum_start`, `csum_offset`) and `network_header`, and the bitfields
/// `ip_summed`, `csum_level` and `encapsulation` as byte | shift << 8 | mask << 16.
#[unsafe(no_mangle)]
static OFF_SKB_WINDOW: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_CSUM: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_NETWORK_HEADER: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_IP_SUMMED: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_CSUM_LEVEL: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_ENCAP: Global<u32> = Global::new(0);

/// The state packed into one register, so that carrying it costs no stack: bits 0-15
/// `csum_start`, 16-31 `csum_offset` (together `skb->csum`), 32-47 `network_header`, 48-55
/// `ip_summed` (or `IP_SUMMED_UNKNOWN`), 56-57 `csum_level`, 58 `encapsulation`.
#[derive(Clone, Copy)]
pub struct SkbState(u64);

#[expect(
    clippy::cast_possible_truncation,
    reason = "unpacking the fields of the packed u64, each masked to its width by the shift"
)]
impl SkbState {
    pub const UNKNOWN: Self = Self((IP_SUMMED_UNKNOWN as u64) << 48);

    #[inline(always)]
    pub fn ip_summed(self) -> u8 {
        (self.0 >> 48) as u8
    }
    #[inline(always)]
    pub fn csum_start(self) -> u16 {
        self.0 as u16
    }
    #[inline(always)]
    pub fn csum_offset(self) -> u16 {
        (self.0 >> 16) as u16
    }
    #[inline(always)]
    pub fn network_header(self) -> u16 {
        (self.0 >> 32) as u16
    }
    #[inline(always)]
    pub fn csum_level(self) -> u8 {
        ((self.0 >> 56) & 3) as u8
    }
    #[inline(always)]
    pub fn flags(self) -> u8 {
        if self.0 >> 58 & 1 != 0 {
            SKB_ENCAPSULATION
        } else {
            0
        }
    }

    /// For a `CHECKSUM_PARTIAL` skb whose IP header is at `l3_off` in the frame the program sees:
    /// where the checksum is to be completed, as the frame offset of `csum_start` |
    /// `csum_offset` << 16 (`SourceState::partial`, compared with `partial_key`); `u32::MAX`
    /// for any other skb. `csum_start` and `network_header` both count from `skb->head`, so
    /// their difference is the distance from the IP header whatever the headroom.
    #[inline(always)]
    pub fn partial(self, l3_off: u32) -> u32 {
        if self.ip_summed() != IpSummed::Partial as u8 {
            return u32::MAX;
        }
        let start = u32::from(self.csum_start())
            .wrapping_sub(u32::from(self.network_header()))
            .wrapping_add(l3_off);
        (start & 0xffff) | u32::from(self.csum_offset()) << 16
    }

    #[inline(always)]
    pub const fn raw(self) -> u64 {
        self.0
    }

    #[inline(always)]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

/// `SkbState::partial` of a skb whose checksum field is `field` bytes into the segment at
/// `l4_off`.
#[inline(always)]
pub fn partial_key(l4_off: u32, field: u32) -> u32 {
    (l4_off & 0xffff) | field << 16
}

/// The bytes read, 8-aligned: the verifier wants aligned loads.
#[repr(C, align(8))]
struct Window([u8; SKB_WINDOW as usize]);

/// Where `csa_skb_state` reads the window to: a per-CPU map value, not its stack. Its frame is the
/// last of the chain program -> `csa_audit_level_tc` -> `csa_emit_tc` -> `csa_skb_state`, and
/// Linux 6.1 rounds each frame of a chain up to 32 bytes and refuses a chain over 512: with the
/// window on the stack it came to 544 ("combined stack size of 4 calls is 544. Too large").
#[map]
static SKB_WINDOW_BUF: PerCpuArray<Window> = PerCpuArray::with_max_entries(1, 0);

/// One bitfield from its global: byte in the window | shift << 8 | mask << 16 (user space checks
/// that it fits in one byte).
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the mask is the encoding's third byte"
)]
fn bits(w: &Window, at: u32) -> u64 {
    u64::from((w.0[(at & (SKB_WINDOW - 1)) as usize] >> ((at >> 8) & 7)) & (at >> 16) as u8)
}

/// Reads the skb's checksum state (see the module's comment). Global (exported in build.rs): the
/// verifier checks it once, with `ctx` as the program's context.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn csa_skb_state(ctx: *mut __sk_buff) -> u64 {
    let Some(w) = SKB_WINDOW_BUF.get_ptr_mut(0) else {
        return SkbState::UNKNOWN.0;
    };
    // SAFETY: a kernel address read with the fault-tolerant helper into this CPU's map value of
    // exactly `SKB_WINDOW` bytes; the verifier accepts the context plus a constant as its source.
    let rc = unsafe {
        bpf_probe_read_kernel(
            w.cast(),
            SKB_WINDOW,
            ctx.cast::<u8>()
                .wrapping_add(OFF_SKB_WINDOW.load() as usize)
                .cast(),
        )
    };
    if rc != 0 {
        return SkbState::UNKNOWN.0;
    }
    // SAFETY: this CPU's value, all `SKB_WINDOW` bytes just written by the helper.
    let w = unsafe { &*w };
    // 4- and 2-aligned in the window (user space checks), so these are aligned stack loads.
    let csum_at = (SKB_CSUM.load() & (SKB_WINDOW - 4)) as usize;
    let csum = u64::from(u32::from_ne_bytes([
        w.0[csum_at],
        w.0[csum_at + 1],
        w.0[csum_at + 2],
        w.0[csum_at + 3],
    ]));
    let nh_at = (SKB_NETWORK_HEADER.load() & (SKB_WINDOW - 2)) as usize;
    let network_header = u64::from(u16::from_ne_bytes([w.0[nh_at], w.0[nh_at + 1]]));
    csum | network_header << 32
        | bits(w, SKB_IP_SUMMED.load()) << 48
        | bits(w, SKB_CSUM_LEVEL.load()) << 56
        | bits(w, SKB_ENCAP.load()) << 58
}

/// The state of the skb at `ctx`, or `UNKNOWN` when `SKB_STATE` is off.
#[inline(always)]
pub fn state(ctx: *mut __sk_buff) -> SkbState {
    if SKB_STATE.load() == 0 {
        return SkbState::UNKNOWN;
    }
    SkbState(csa_skb_state(ctx))
}
