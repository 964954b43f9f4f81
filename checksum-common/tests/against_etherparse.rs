//! Property tests of the shared checksum arithmetic against etherparse, an independent
//! implementation that computes checksums on big-endian words.
#![expect(
    clippy::cast_possible_truncation,
    reason = "the generated datagrams are at most 1,608 bytes long"
)]

use checksum_common::{
    Kind,
    csum::{
        classify, expected_field, fold, pseudo_header_v4, pseudo_header_v6, sum_bytes, verifies,
    },
};
use etherparse::UdpHeader;
use proptest::prelude::*;

/// The UDP datagram (header + payload) with its checksum field set to `field` (wire value).
fn datagram(h: &UdpHeader, payload: &[u8], field: u16) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&h.source_port.to_be_bytes());
    d.extend_from_slice(&h.destination_port.to_be_bytes());
    d.extend_from_slice(&h.length.to_be_bytes());
    d.extend_from_slice(&field.to_be_bytes());
    d.extend_from_slice(payload);
    d
}

fn header(sport: u16, dport: u16, payload: &[u8]) -> UdpHeader {
    UdpHeader {
        source_port: sport,
        destination_port: dport,
        length: (8 + payload.len()) as u16,
        checksum: 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ipv4_udp_matches_etherparse(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16,
                                   payload in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let h = header(sport, dport, &payload);
        let reference = h.calc_checksum_ipv4_raw(src, dst, &payload).unwrap();
        let d = datagram(&h, &payload, 0);
        let sum = sum_bytes(pseudo_header_v4(src, dst, 17, d.len() as u16), &d);
        let mut ours = u16::from_be(!fold(sum));
        if ours == 0 { ours = 0xffff; }
        prop_assert_eq!(ours, reference);
        // With the field filled in, the sum over everything verifies.
        let filled = datagram(&h, &payload, reference);
        let sum = sum_bytes(pseudo_header_v4(src, dst, 17, d.len() as u16), &filled);
        prop_assert!(verifies(sum));
    }

    #[test]
    fn ipv6_udp_matches_etherparse(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16,
                                   payload in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let h = header(sport, dport, &payload);
        let reference = h.calc_checksum_ipv6_raw(src, dst, &payload).unwrap();
        let filled = datagram(&h, &payload, reference);
        let sum = sum_bytes(pseudo_header_v6(&src, &dst, 17, filled.len() as u32), &filled);
        prop_assert!(verifies(sum));
    }

    #[test]
    fn expected_field_is_the_reference_checksum(src: [u8; 4], dst: [u8; 4], field: u16,
                                                payload in proptest::collection::vec(any::<u8>(), 1..600)) {
        let h = header(1, 2, &payload);
        let reference = h.calc_checksum_ipv4_raw(src, dst, &payload).unwrap();
        let d = datagram(&h, &payload, field);
        let sum = sum_bytes(pseudo_header_v4(src, dst, 17, d.len() as u16), &d);
        let want = u16::from_be(expected_field(sum, field.to_be()));
        // UDP sends a computed 0 as 0xffff; both are the same one's-complement value.
        prop_assert!(want == reference || (want == 0 && reference == 0xffff), "want {want:#x} ref {reference:#x}");
        prop_assert_eq!(verifies(sum), field == reference || (field == 0 && reference == 0xffff) || (field == 0xffff && reference == 0));
    }

    #[test]
    fn any_single_bit_flip_is_detected(payload in proptest::collection::vec(any::<u8>(), 1..300), bit in 0usize..2400) {
        let h = header(7, 9, &payload);
        let reference = h.calc_checksum_ipv4_raw([10, 0, 0, 1], [10, 0, 0, 2], &payload).unwrap();
        let mut d = datagram(&h, &payload, reference);
        let bit = bit % (d.len() * 8);
        d[bit / 8] ^= 1 << (bit % 8);
        let sum = sum_bytes(pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 17, d.len() as u16), &d);
        // The one exception: a flip that turns the field 0x0000 into 0xffff or back is the same
        // one's-complement value, and the length field is in the pseudo-header too.
        let field = u16::from_be_bytes([d[6], d[7]]);
        let benign = field ^ reference == 0xffff;
        prop_assert!(!verifies(sum) || benign || (4..6).contains(&(bit / 8)));
    }

    #[test]
    fn offload_pending_is_the_folded_pseudo_header(src: [u8; 4], dst: [u8; 4],
                                                   payload in proptest::collection::vec(any::<u8>(), 1..300)) {
        let h = header(1, 2, &payload);
        let pseudo = fold(pseudo_header_v4(src, dst, 17, h.length));
        let d = datagram(&h, &payload, u16::from_be(pseudo));
        let sum = sum_bytes(pseudo_header_v4(src, dst, 17, h.length), &d);
        if !verifies(sum) {
            let want = expected_field(sum, pseudo);
            prop_assert_eq!(classify(pseudo, want, Some(pseudo)), Kind::OffloadPending);
        }
    }
}

#[test]
fn odd_lengths_pad_with_zero() {
    assert_eq!(sum_bytes(0, &[0xab]), sum_bytes(0, &[0xab, 0x00]));
    assert_eq!(sum_bytes(0, &[1, 2, 3]), sum_bytes(0, &[1, 2, 3, 0]));
}
