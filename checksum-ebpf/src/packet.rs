//! Byte access to a packet, independent of the hook. Everything is read through the load-bytes
//! helpers, which also reach into the fragments of multi-buffer (jumbo) XDP frames.

use aya_ebpf::{
    EbpfContext,
    helpers::generated::{bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    programs::XdpContext,
};

pub trait Packet {
    type Ctx: EbpfContext;
    fn context(&self) -> &Self::Ctx;
    /// Total length, fragments included.
    fn len(&self) -> u32;
    fn ifindex(&self) -> u32;
    /// Copies `len` bytes at `off` into `dst`; false when they are not all in the packet.
    fn load_raw(&self, off: u32, dst: *mut u8, len: u32) -> bool;

    /// Copies a constant number of bytes to the stack.
    #[inline(always)]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        let mut buf = [0u8; N];
        self.load_raw(off, buf.as_mut_ptr(), N as u32)
            .then_some(buf)
    }
}

pub struct XdpPacket(pub XdpContext);

impl Packet for XdpPacket {
    type Ctx = XdpContext;

    #[inline(always)]
    fn context(&self) -> &XdpContext {
        &self.0
    }
    #[inline(always)]
    fn len(&self) -> u32 {
        unsafe { bpf_xdp_get_buff_len(self.0.as_ptr().cast()) as u32 }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        unsafe { (*self.0.ctx).ingress_ifindex }
    }

    #[inline(always)]
    fn load_raw(&self, off: u32, dst: *mut u8, len: u32) -> bool {
        unsafe { bpf_xdp_load_bytes(self.0.as_ptr().cast(), off, dst.cast(), len) == 0 }
    }
}

#[inline(always)]
pub fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

#[inline(always)]
pub fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// A 16-bit field exactly as it lies in memory (see checksum_common::csum).
#[inline(always)]
pub fn mem16(b: &[u8], i: usize) -> u16 {
    u16::from_ne_bytes([b[i], b[i + 1]])
}
