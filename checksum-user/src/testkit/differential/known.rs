//! Disagreements that are kernel-program issues already reported, each recognised by a narrow
//! predicate: the frame must have the shape and the outcomes may differ only where the
//! issue says, so nothing else hides behind an entry. `tests/differential.rs` checks that each
//! still happens; when one is fixed, delete its entry.

use checksum_common::{Kind, Layer, Status};

use super::{
    judged::{Judged, Outcome},
    reference,
};

pub const ICMP_ALL_ZERO_WANT: &str = "ICMPv4 message of all zero bytes with a bad field: the \
    kernel wants 0x0000 (checksum-common csum::expected_field), RFC 1071 gives 0xffff (the \
    complement of +0), and 0x0000 does not verify";
pub const SHORT_ICMP_AT_FRAME_END: &str = "ICMP/ICMPv6 message of 4 to 7 bytes that ends the \
    frame: the kernel counts it malformed (audit.rs check_segment loads 8 header bytes for every \
    protocol), the same message followed by padding is verified";
pub const UDP6_ZERO_IS_NEGATIVE_ZERO: &str = "UDP over IPv6 with a zero field whose correct value \
    is 0xffff (the sum computes to 0): the kernel reports ok (summing over the field verifies \
    0x0000), the README says a zero UDP/IPv6 field is bad, kind zero (RFC 8200 8.1, RFC 768)";
pub const LAST_FRAGMENT_HEADER_WINS: &str = "IPv6 with several Fragment headers, a fragmenting one \
    followed by an atomic one: the kernel verifies the fragment (parse.rs ipv6 overwrites \
    is_fragment with each Fragment header), its bytes are not the whole segment";

/// Every entry, for tests and reports.
pub const ALL: [&str; 4] = [
    ICMP_ALL_ZERO_WANT,
    SHORT_ICMP_AT_FRAME_END,
    UDP6_ZERO_IS_NEGATIVE_ZERO,
    LAST_FRAGMENT_HEADER_WINS,
];

/// Why the kernel differs from the reference on this frame, when that is a listed issue.
pub fn explain(frame: &[u8], expected: &Outcome, observed: &Outcome) -> Option<&'static str> {
    let (_, trace) = reference::trace(frame);
    let e = expected.verdicts.last()?;
    let is_icmp = matches!(e.layer, Layer::Icmp | Layer::Icmpv6);
    // Everything before the transport verdict agrees.
    let n = expected.verdicts.len() - 1;
    if expected.not_ip != observed.not_ip
        || observed.verdicts.len() < n
        || expected.verdicts[..n] != observed.verdicts[..n]
    {
        return None;
    }
    let o = observed.verdicts.get(n);
    let same_frame_counters = expected.malformed == observed.malformed;

    if e.layer == Layer::Icmp
        && e.status == Status::Bad
        && e.want == Some(0xffff)
        && same_frame_counters
        && o.is_some_and(|o| o == &with(e, |j| j.want = Some(0)))
    {
        return Some(ICMP_ALL_ZERO_WANT);
    }
    let offset = trace.transport_offset?;
    if is_icmp
        && (4..8).contains(&e.len)
        && matches!(e.status, Status::Ok | Status::Bad)
        && frame.len() < offset + 8
        && observed.malformed
        && !expected.malformed
        && o.is_none()
    {
        return Some(SHORT_ICMP_AT_FRAME_END);
    }
    if e.layer == Layer::Udp
        && e.kind == Some(Kind::Zero)
        && e.want == Some(0xffff)
        && !e.src.is_ipv4()
        && same_frame_counters
        && o.is_some_and(|o| {
            o == &with(e, |j| {
                j.status = Status::Ok;
                j.kind = None;
                j.want = Some(0);
            })
        })
    {
        return Some(UDP6_ZERO_IS_NEGATIVE_ZERO);
    }
    let frags = &trace.fragment_headers;
    if frags.len() >= 2
        && frags.iter().any(|f| *f)
        && frags.last() == Some(&false)
        && e.status == Status::Unverifiable
        && !expected.malformed
        // Walked as whole, the segment is verified, or too short for its header.
        && (o.is_some_and(|o| o.layer == e.layer && o.status != Status::Unverifiable)
            || (observed.malformed && o.is_none()))
    {
        return Some(LAST_FRAGMENT_HEADER_WINS);
    }
    None
}

fn with(j: &Judged, f: impl FnOnce(&mut Judged)) -> Judged {
    let mut j = j.clone();
    f(&mut j);
    j
}
