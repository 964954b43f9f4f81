//! Internet checksum arithmetic (RFC 1071, RFC 1624) on "memory-order" 16-bit words.
//!
//! The kernel's `bpf_csum_diff` sums packet bytes read as native-endian words; the one's-complement
//! sum is byte-order independent (RFC 1071 section 2.B), so everything here works on words exactly
//! as they lie in memory and converts to the wire value (`u16::from_be`) only for display. Keeping a
//! single convention lets the kernel, user space and tests share every function below.
#![expect(
    clippy::inline_always,
    reason = "the eBPF programs call these: BPF code must be inlined into the program that uses it"
)]

/// Folds a wide one's-complement accumulator to 16 bits with end-around carry.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "folded into 16 bits by then: the carries are added back"
)]
pub const fn fold(sum: u64) -> u16 {
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// A 16-bit word as it lies in memory when the wire carries the big-endian value `v`.
#[inline(always)]
pub const fn wire_word(v: u16) -> u16 {
    v.to_be()
}

/// Sums `bytes` as memory-order 16-bit words, padding an odd tail with a zero byte.
/// Reference summation for user space and tests; the kernel sums with `bpf_csum_diff`.
pub fn sum_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut sum = seed;
    let (words, rest) = bytes.as_chunks::<2>();
    for w in words {
        sum += u64::from(u16::from_ne_bytes(*w));
    }
    if let [last] = rest {
        sum += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    sum
}

#[inline(always)]
const fn sum_addr4(a: [u8; 4]) -> u64 {
    u16::from_ne_bytes([a[0], a[1]]) as u64 + u16::from_ne_bytes([a[2], a[3]]) as u64
}

#[inline(always)]
const fn sum_addr16(a: &[u8; 16]) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < 16 {
        sum += u16::from_ne_bytes([a[i], a[i + 1]]) as u64;
        i += 2;
    }
    sum
}

/// Unfolded pseudo-header sum for TCP/UDP over IPv4 (RFC 793, RFC 768).
#[inline(always)]
pub const fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u16) -> u64 {
    sum_addr4(src) + sum_addr4(dst) + wire_word(proto as u16) as u64 + wire_word(l4_len) as u64
}

/// Unfolded pseudo-header sum for IPv6 upper layers (RFC 8200 section 8.1). `dst` is the final
/// destination when a Routing header is present.
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the 32-bit length is summed as its two 16-bit halves"
)]
pub const fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, l4_len: u32) -> u64 {
    sum_addr16(src)
        + sum_addr16(dst)
        + wire_word((l4_len >> 16) as u16) as u64
        + wire_word(l4_len as u16) as u64
        + wire_word(next_header as u16) as u64
}

/// True when a sum that includes the checksum field verifies. Summing over the field (instead of
/// comparing it with a recomputed value) accepts both one's-complement zeros, 0x0000 and 0xffff.
#[inline(always)]
pub const fn verifies(sum_over_field: u64) -> bool {
    fold(sum_over_field) == 0xffff
}

/// The value the field should hold, from a sum that includes the field `field` (memory order).
#[inline(always)]
pub const fn expected_field(sum_over_field: u64, field: u16) -> u16 {
    // One's-complement subtraction of the field: add its complement.
    !fold(sum_over_field + (!field) as u64)
}

/// The value the field should hold, from the sum of everything it covers except the field.
/// Unlike `expected_field`, this tells +0 from -0: data of all zero bytes sums to exactly 0 and
/// wants 0xffff. It matters only where the data can be all zero, without a pseudo-header (ICMPv4).
#[inline(always)]
pub const fn field_for(sum_without_field: u64) -> u16 {
    !fold(sum_without_field)
}

/// `CHECKSUM_COMPLETE`: the sum over an L4 segment and its pseudo-header (so, with `verifies`,
/// whether its checksum is right) from the device's sum of the frame from the network header to
/// its end (`skb->csum`, folded to 32 bits), without summing the segment again.
///
/// * `before_l4`: the sum of the bytes from the network header to the L4 header (IP header with
///   options, IPv6 extension headers). A valid IPv4 header sums to zero, so for IPv4 whose header
///   checksum verifies it can be 0.
/// * `after_l4`: the sum of the bytes after the segment that the device summed too: Ethernet
///   padding, until the IP layer trims it.
/// * `pseudo`: the pseudo-header sum.
///
/// Each sum is of memory-order words at the bytes' offsets from the network header, so a part
/// that starts at an odd offset is summed byte-swapped (`sum_bytes` of it, then `swap_bytes`).
/// The device's sum starts at the network header at TC: `eth_type_trans` pulls the Ethernet
/// header and a VLAN tag is pulled with `skb_pull_rcsum`, both before TC ingress runs, and `tcx`
/// pushes the MAC header back for the program without adding it to the sum.
pub const fn complete_l4_sum(skb_csum: u32, before_l4: u64, after_l4: u64, pseudo: u64) -> u64 {
    // total - before - after + pseudo: subtracting is adding the complement.
    fold(skb_csum as u64) as u64 + !fold(before_l4) as u64 + !fold(after_l4) as u64 + pseudo
}

/// Classifies a mismatching field, testing the signatures in a fixed order.
///
/// * `field`, `want`: memory-order field and correct value.
/// * `pseudo`: the folded pseudo-header sum, or `None` for checksums without one (IPv4 header,
///   ICMPv4).
#[inline(always)]
pub const fn classify(field: u16, want: u16, pseudo: Option<u16>) -> crate::Kind {
    use crate::Kind;
    if let Some(p) = pseudo
        && field == p
    {
        return Kind::OffloadPending;
    }
    if field == 0 {
        return Kind::Zero;
    }
    if field == want.swap_bytes() {
        return Kind::ByteSwapped;
    }
    Kind::Corrupt
}

// One's-complement arithmetic on checksum *values*: host-order numbers of the big-endian wire
// value, as events carry them (`got`, `want`, `pseudo`). The one's-complement sum is byte-order
// independent, so these are the same operations as above, only on the representation user space
// reasons in. In this arithmetic `!x` is `-x`, and 0x0000 and 0xffff are both zero.

/// `a + b` in one's complement (RFC 1071), folded. The result is 0x0000 only when both are.
#[inline(always)]
pub const fn ones_add(a: u16, b: u16) -> u16 {
    fold(a as u64 + b as u64)
}

/// `a - b` in one's complement (RFC 1624): adding the complement. `ones_sub(a, a)` is 0xffff
/// (negative zero), so compare results with `ones_eq`.
#[inline(always)]
pub const fn ones_sub(a: u16, b: u16) -> u16 {
    ones_add(a, !b)
}

/// Equality in one's complement, where 0x0000 and 0xffff are the same number (zero).
#[inline(always)]
pub const fn ones_eq(a: u16, b: u16) -> bool {
    a % 0xffff == b % 0xffff
}

/// `a / 2` in one's complement. Doubling is a left rotation by one bit (2^16 = 1 modulo 0xffff),
/// so halving is a right rotation; this undoes a change that was counted twice.
#[inline(always)]
pub const fn ones_half(a: u16) -> u16 {
    a.rotate_right(1)
}

/// The one's-complement sum of an IPv4 address's two big-endian words: what the address adds to
/// a pseudo-header (or to the IPv4 header checksum).
#[inline(always)]
pub const fn addr_sum_v4(a: [u8; 4]) -> u16 {
    ones_add(
        u16::from_be_bytes([a[0], a[1]]),
        u16::from_be_bytes([a[2], a[3]]),
    )
}

/// The one's-complement sum of an IPv6 address's eight big-endian words.
#[inline(always)]
pub const fn addr_sum_v6(a: &[u8; 16]) -> u16 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < 16 {
        sum += u16::from_be_bytes([a[i], a[i + 1]]) as u64;
        i += 2;
    }
    fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_handles_carries() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0xffff), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(u64::MAX), 0xffff);
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (big-endian).
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(u16::from_be(fold(sum_bytes(0, &bytes))), 0xddf2);
    }

    #[test]
    fn both_zeros_verify() {
        // A segment whose correct checksum is 0x0000 also verifies when the field holds 0xffff.
        let data_sum = 0xffffu64; // the other words fold to 0xffff, so the field should be 0
        assert!(verifies(data_sum));
        assert!(verifies(data_sum + 0xffff));
    }

    #[test]
    fn classification_order() {
        use crate::Kind;
        assert_eq!(classify(0x1234, 0x5678, Some(0x1234)), Kind::OffloadPending);
        assert_eq!(classify(0, 0x5678, Some(0x1234)), Kind::Zero);
        assert_eq!(classify(0x7856, 0x5678, Some(0x1234)), Kind::ByteSwapped);
        assert_eq!(classify(0x1111, 0x5678, None), Kind::Corrupt);
        // Without a pseudo-header an offload signature cannot exist.
        assert_eq!(classify(0x1234, 0x5678, None), Kind::Corrupt);
    }

    #[test]
    fn ones_complement_helpers() {
        assert_eq!(ones_add(0xfffe, 0x0003), 0x0002); // end-around carry
        assert_eq!(ones_sub(0x1234, 0x1234), 0xffff); // negative zero
        assert!(ones_eq(0, 0xffff) && ones_eq(0x1234, 0x1234) && !ones_eq(0, 1));
        for (a, b) in [(0x1234, 0xabcd), (0, 0xffff), (0xffff, 1), (0x8000, 0x8000)] {
            assert!(ones_eq(ones_add(ones_sub(a, b), b), a));
            assert!(ones_eq(ones_half(ones_add(a, a)), a));
            // `!x` is `-x`.
            assert!(ones_eq(ones_add(a, !a), 0));
        }
    }

    #[test]
    fn address_sums() {
        // 10.96.0.10: words 0x0a60 + 0x000a.
        assert_eq!(addr_sum_v4([10, 96, 0, 10]), 0x0a6a);
        assert_eq!(addr_sum_v4([0xff, 0xff, 0x00, 0x01]), 0x0001); // carry folds back
        let mut v6 = [0u8; 16];
        v6[0] = 0xfd;
        v6[15] = 0x10;
        assert_eq!(addr_sum_v6(&v6), 0xfd10);
        // The same words as the memory-order pseudo-header sums, read as wire values.
        let a = [192, 168, 240, 220];
        assert_eq!(u16::from_be(fold(sum_addr4(a))), addr_sum_v4(a));
        assert_eq!(u16::from_be(fold(sum_addr16(&v6))), addr_sum_v6(&v6));
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "test frames of a few dozen bytes"
    )]
    mod complete {
        //! `complete_l4_sum` against the full sum, on frames as a NIC sums them: IPv4 with
        //! options, IPv6 with extension headers, a VLAN tag pulled off the sum, Ethernet padding
        //! (zeros and garbage), odd segment lengths.
        extern crate std;
        use std::{vec, vec::Vec};

        use proptest::prelude::*;

        use super::super::*;

        /// Sum of `bytes` placed at `offset` from where the device started summing.
        fn sum_at(offset: usize, bytes: &[u8]) -> u64 {
            let s = fold(sum_bytes(0, bytes));
            u64::from(if offset % 2 == 1 { s.swap_bytes() } else { s })
        }

        /// A TCP segment with its correct checksum (memory order), and the pseudo-header sum.
        fn tcp(src: &[u8], dst: &[u8], v6: bool, payload: &[u8], good: bool) -> (Vec<u8>, u64) {
            let mut seg = Vec::new();
            seg.extend_from_slice(&[0x9c, 0x40, 0x1f, 0x90, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18]);
            seg.extend_from_slice(&[2, 0, 0, 0, 0, 0]);
            seg.extend_from_slice(payload);
            let len = seg.len();
            let pseudo = if v6 {
                pseudo_header_v6(
                    src.try_into().unwrap(),
                    dst.try_into().unwrap(),
                    6,
                    len as u32,
                )
            } else {
                pseudo_header_v4(
                    src.try_into().unwrap(),
                    dst.try_into().unwrap(),
                    6,
                    len as u16,
                )
            };
            let field = field_for(sum_bytes(pseudo, &seg));
            let field = if good { field } else { field ^ 0x0101 };
            seg[16..18].copy_from_slice(&field.to_ne_bytes());
            (seg, pseudo)
        }

        fn ipv4(opts: &[u8], l4_len: usize) -> Vec<u8> {
            let ihl = 20 + opts.len();
            let total = (ihl + l4_len) as u16;
            let mut h = Vec::new();
            h.extend_from_slice(&[0x40 | (ihl / 4) as u8, 0]);
            h.extend_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
            h.extend_from_slice(opts);
            let c = field_for(sum_bytes(0, &h));
            h[10..12].copy_from_slice(&c.to_ne_bytes());
            h
        }

        /// Checks one frame: `l3` (network header to L4), the segment, `after` (padding).
        fn check(l3: &[u8], seg: &[u8], after: &[u8], pseudo: u64, assume_header_zero: bool) {
            let mut frame = l3.to_vec();
            frame.extend_from_slice(seg);
            frame.extend_from_slice(after);
            // What the device leaves in skb->csum: the whole sum from the network header.
            let skb_csum = u32::from(fold(sum_bytes(0, &frame)));
            let before = if assume_header_zero { 0 } else { sum_at(0, l3) };
            let after_sum = sum_at(l3.len() + seg.len(), after);
            let got = complete_l4_sum(skb_csum, before, after_sum, pseudo);
            let full = sum_bytes(pseudo, seg);
            assert_eq!(verifies(got), verifies(full), "frame {frame:02x?}");
            assert!(
                fold(got) % 0xffff == fold(full) % 0xffff,
                "frame {frame:02x?}"
            );
        }

        proptest! {
            #[test]
            fn ipv4_with_options_and_padding(
                payload in proptest::collection::vec(any::<u8>(), 0..40),
                words in 0usize..10,
                pad in proptest::collection::vec(any::<u8>(), 0..46),
                good: bool,
            ) {
                let (seg, pseudo) = tcp(&[10, 0, 0, 1], &[10, 0, 0, 2], false, &payload, good);
                let opts: Vec<u8> = (0..words * 4).map(|i| u8::from(i % 4 != 3)).collect();
                let l3 = ipv4(&opts, seg.len());
                // A valid IPv4 header sums to zero: it need not be summed at all.
                check(&l3, &seg, &pad, pseudo, true);
                check(&l3, &seg, &pad, pseudo, false);
            }

            #[test]
            fn ipv6_with_extension_headers(
                payload in proptest::collection::vec(any::<u8>(), 0..40),
                ext in proptest::collection::vec(any::<u8>(), 0..4),
                pad in proptest::collection::vec(any::<u8>(), 0..10),
                good: bool,
            ) {
                let src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
                let dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
                let (seg, pseudo) = tcp(&src, &dst, true, &payload, good);
                let mut l3 = vec![0x60, 0, 0, 0];
                l3.extend_from_slice(&((seg.len() + 8 * ext.len()) as u16).to_be_bytes());
                l3.extend_from_slice(&[0, 64]);
                l3.extend_from_slice(&src);
                l3.extend_from_slice(&dst);
                // Hop-by-hop / destination options headers of 8 bytes each, arbitrary contents.
                for (i, b) in ext.iter().enumerate() {
                    let next = if i + 1 == ext.len() { 6 } else { 60 };
                    l3.extend_from_slice(&[next, 0, *b, 4, 1, 2, 3, 4]);
                }
                check(&l3, &seg, &pad, pseudo, false);
            }

            #[test]
            fn a_vlan_tag_pulled_off_the_sum(
                payload in proptest::collection::vec(any::<u8>(), 1..40),
                tci: u16,
                good: bool,
            ) {
                // The NIC sums from after the Ethernet header, tag included; skb_vlan_untag pulls
                // the tag with skb_pull_rcsum (subtracting its sum) before TC ingress runs.
                let (seg, pseudo) = tcp(&[10, 0, 0, 1], &[10, 0, 0, 2], false, &payload, good);
                let l3 = ipv4(&[], seg.len());
                let mut tagged = tci.to_be_bytes().to_vec();
                tagged.extend_from_slice(&[0x08, 0x00]);
                let tag = tagged.clone();
                tagged.extend_from_slice(&l3);
                tagged.extend_from_slice(&seg);
                let device = fold(sum_bytes(0, &tagged));
                let pulled = u32::from(fold(u64::from(device) + u64::from(!fold(sum_bytes(0, &tag)))));
                let got = complete_l4_sum(pulled, 0, 0, pseudo);
                prop_assert_eq!(verifies(got), good);
            }
        }
    }

    mod rewrite {
        //! A checksum left stale by an address rewrite differs from the correct one by exactly
        //! the change in the address's sum, checked against real bytes summed independently.
        extern crate std;
        use std::vec::Vec;

        use proptest::prelude::*;

        use super::super::*;
        // The independent reference: shares no code with the arithmetic under test.
        use crate::reference::reference_checksum;

        /// A UDP datagram with its pseudo-header in front (the bytes the checksum covers), the
        /// checksum field left zero.
        fn covered(src: &[u8], dst: &[u8], payload: &[u8]) -> Vec<u8> {
            let len = u16::try_from(8 + payload.len()).expect("payloads under 64 bytes");
            let mut b = Vec::new();
            b.extend_from_slice(src);
            b.extend_from_slice(dst);
            b.extend_from_slice(&[0, 17]);
            b.extend_from_slice(&len.to_be_bytes()); // IPv6 has 32 bits here; same sum
            b.extend_from_slice(&[0x9c, 0x40, 0x00, 0x35]); // ports 40000 -> 53
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(payload);
            b
        }

        proptest! {
            #[test]
            fn stale_field_is_off_by_the_address_change_v4(
                src: [u8; 4], vip: [u8; 4], pod: [u8; 4],
                payload in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                // Checksummed for dst = vip, then dst rewritten to pod without an update.
                let field = reference_checksum(&[&covered(&src, &vip, &payload)]);
                let correct = reference_checksum(&[&covered(&src, &pod, &payload)]);
                let d = ones_sub(field, correct);
                prop_assert!(ones_eq(d, ones_sub(addr_sum_v4(pod), addr_sum_v4(vip))));
            }

            #[test]
            fn stale_field_is_off_by_the_address_change_v6(
                src: [u8; 16], vip: [u8; 16], pod: [u8; 16],
                payload in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let field = reference_checksum(&[&covered(&src, &vip, &payload)]);
                let correct = reference_checksum(&[&covered(&src, &pod, &payload)]);
                let d = ones_sub(field, correct);
                prop_assert!(ones_eq(d, ones_sub(addr_sum_v6(&pod), addr_sum_v6(&vip))));
            }
        }
    }
}
