//! The TC entry points. The wrapper aya's `#[classifier]` generates takes the raw `__sk_buff`
//! pointer in a safe `pub fn`; clippy's `not_unsafe_ptr_arg_deref` only looks at functions other
//! crates can reach, and this module is private, so nothing here needs silencing (the fault
//! injector, whose program sits at its crate's root, does).

use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};
use checksum_common::Hook;

use crate::{audit, packet};

/// TC programs return `TC_ACT_UNSPEC`, which is `TCX_NEXT`: the packet goes on to the next program in
/// the chain exactly as if we were not there (`TC_ACT_OK` would end the chain for programs after us).
#[classifier]
pub fn csum_tc_ingress(ctx: TcContext) -> i32 {
    audit::audit_frame(&packet::TcPacket(ctx), Hook::TcIngress);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn csum_tc_egress(ctx: TcContext) -> i32 {
    audit::audit_frame(&packet::TcPacket(ctx), Hook::TcEgress);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn noop_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}
