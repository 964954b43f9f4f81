//! The tests' independent reference: the Internet checksum as RFC 1071 writes it (big-endian
//! words, a wide accumulator folded at the end), sharing no code with [`crate::csum`], so that the
//! tests check `csum` and the kernel programs against something they cannot share a bug with.
//! Used by the unit tests here and in checksum-user, and by checksum-testkit; never by the
//! programs or the binary.

/// One's-complement sum of `parts`, concatenated, as big-endian words: folded, not complemented.
/// An odd last byte is padded with a zero byte.
#[expect(
    clippy::cast_possible_truncation,
    reason = "folded to 16 bits just before the cast"
)]
pub fn ref_sum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    // The byte waiting for its partner when a part ends halfway through a word.
    let mut high: Option<u8> = None;
    for byte in parts.iter().flat_map(|part| part.iter().copied()) {
        match high.take() {
            Some(h) => sum += (u64::from(h) << 8) | u64::from(byte),
            None => high = Some(byte),
        }
    }
    if let Some(h) = high {
        sum += u64::from(h) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop above leaves at most 16 bits.
    sum as u16
}

/// The Internet checksum of `parts`, concatenated: the complement of [`ref_sum`].
pub fn reference_checksum(parts: &[&[u8]]) -> u16 {
    !ref_sum(parts)
}
