//! Internet checksum arithmetic (RFC 1071, RFC 1624) on "memory-order" 16-bit words.
//!
//! The kernel's `bpf_csum_diff` sums packet bytes read as native-endian words; the one's-complement
//! sum is byte-order independent (RFC 1071 section 2.B), so everything here works on words exactly
//! as they lie in memory and converts to the wire value (`u16::from_be`) only for display. Keeping a
//! single convention lets the kernel, user space and tests share every function below.

/// Folds a wide one's-complement accumulator to 16 bits with end-around carry.
#[inline(always)]
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
        sum += u16::from_ne_bytes(*w) as u64;
    }
    if let [last] = rest {
        sum += u16::from_ne_bytes([*last, 0]) as u64;
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
}
