//! The rewrite signatures: what a rewrite of an address or port (a NAT, a Service DNAT, a load
//! balancer) leaves in a checksum, for each way of failing to update it. Each leaves a constant
//! over the packets of a flow whatever their payload, and that constant is a function of the
//! rewritten value's contribution before (`orig`) and after (`cur`) the rewrite, so the original
//! can be recovered from the current value and the constant (`Signature::original`).
//!
//! Values are one's-complement numbers as `csum::ones_add` takes them. A value's *contribution* is
//! what it adds to the sum the checksum covers: an address's words (`addr_sum_v4`/`_v6`), a port's
//! word, or both. The signatures that update a partial checksum as if it were complete count the
//! address twice (it is in the pseudo-header sum the field held *and* in the update) and the port
//! once (`Signature::contribution`).
//!
//! With F the field as seen, C the correct complete checksum and P the folded pseudo-header sum
//! of the addresses now in the packet:
//!
//! | signature | what the flow shows | constant |
//! |---|---|---|
//! | stale after rewrite | F - C | cur - orig |
//! | partial left alone (seen while partial) | F - P | orig - cur, addresses only |
//! | partial updated as if complete (seen while partial) | F - P | 2 orig_addr + orig_port - (2 cur_addr + cur_port) |
//! | the same, then completed downstream | F - C | 2 cur_addr + cur_port - (2 orig_addr + orig_port) |
//! | absent UDP checksum updated | F | orig - cur |

use crate::csum::{ones_add, ones_sub};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signature {
    /// The checksum was computed before the rewrite and never updated.
    StaleAfterRewrite,
    /// A partial checksum (the pseudo-header sum) kept the sum of the addresses before the
    /// rewrite, seen while still partial.
    PartialLeftAlone,
    /// A partial checksum updated by RFC 1624's rule for a complete one, seen while still
    /// partial: it moved the wrong way.
    PartialUpdatedAsComplete,
    /// The same, then completed downstream (the NIC or the stack summed the data onto it): a
    /// complete checksum off by 2·Δaddr + Δport, the Windows/OVS Service case
    /// (openvswitch/ovs-issues#231).
    CompletedAfterPartialUpdatedAsComplete,
    /// A zero UDP checksum (none sent) "updated" by a NAT as if it were one.
    AbsentChecksumUpdated,
}

/// What a flow shows as a constant under a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// got - want: complete checksums off by a constant.
    Delta,
    /// got - pseudo: a field still partial, off its pseudo-header sum by a constant.
    Excess,
    /// got itself (UDP).
    Field,
}

/// Which parts of the packet a rewrite changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rewritten {
    Addr,
    Port,
    AddrPort,
}

impl Signature {
    pub const ALL: [Self; 5] = [
        Self::StaleAfterRewrite,
        Self::PartialLeftAlone,
        Self::PartialUpdatedAsComplete,
        Self::CompletedAfterPartialUpdatedAsComplete,
        Self::AbsentChecksumUpdated,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::StaleAfterRewrite => "stale-after-rewrite",
            Self::PartialLeftAlone => "partial-left-alone",
            Self::PartialUpdatedAsComplete => "partial-updated-as-complete",
            Self::CompletedAfterPartialUpdatedAsComplete => {
                "partial-updated-as-complete-then-completed"
            }
            Self::AbsentChecksumUpdated => "absent-checksum-updated",
        }
    }

    pub const fn observed(self) -> Observed {
        match self {
            Self::StaleAfterRewrite | Self::CompletedAfterPartialUpdatedAsComplete => {
                Observed::Delta
            }
            Self::PartialLeftAlone | Self::PartialUpdatedAsComplete => Observed::Excess,
            Self::AbsentChecksumUpdated => Observed::Field,
        }
    }

    /// Whether a rewrite of `what` shows as itself under this signature: a partial checksum left
    /// alone holds only the pseudo-header, so a port rewrite alone leaves it right, and one of
    /// address and port shows as the address's alone.
    pub const fn covers(self, what: Rewritten) -> bool {
        !matches!(
            (self, what),
            (
                Self::PartialLeftAlone,
                Rewritten::Port | Rewritten::AddrPort
            )
        )
    }

    /// The signatures of a partial checksum updated as if complete: the address is in the
    /// pseudo-header sum the field held and in the update.
    pub const fn counts_the_address_twice(self) -> bool {
        matches!(
            self,
            Self::PartialUpdatedAsComplete | Self::CompletedAfterPartialUpdatedAsComplete
        )
    }

    /// The contribution of a rewritten value whose address contributes `addr` and port `port`
    /// (`None` for what the rewrite did not change).
    pub const fn contribution(self, addr: Option<u16>, port: Option<u16>) -> u16 {
        let a = match addr {
            Some(a) if self.counts_the_address_twice() => ones_add(a, a),
            Some(a) => a,
            None => 0,
        };
        match port {
            // Ports are not in the pseudo-header a left-alone partial checksum holds.
            Some(p) if !matches!(self, Self::PartialLeftAlone) => ones_add(a, p),
            _ => a,
        }
    }

    /// The constant a rewrite from contribution `orig` to `cur` leaves (see the module table).
    pub const fn constant(self, orig: u16, cur: u16) -> u16 {
        match self {
            Self::StaleAfterRewrite | Self::CompletedAfterPartialUpdatedAsComplete => {
                ones_sub(cur, orig)
            }
            Self::PartialLeftAlone
            | Self::PartialUpdatedAsComplete
            | Self::AbsentChecksumUpdated => ones_sub(orig, cur),
        }
    }

    /// The original contribution, from the current one and the constant the flow shows: the
    /// inverse of `constant`.
    pub const fn original(self, constant: u16, cur: u16) -> u16 {
        match self {
            Self::StaleAfterRewrite | Self::CompletedAfterPartialUpdatedAsComplete => {
                ones_sub(cur, constant)
            }
            Self::PartialLeftAlone
            | Self::PartialUpdatedAsComplete
            | Self::AbsentChecksumUpdated => ones_add(cur, constant),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each signature is produced on real bytes the way the faulty component would (RFC 1624
    //! updates word by word, a NIC completing a partial checksum by summing the segment), with a
    //! reference checksum that shares no code with `csum`, and compared with the formula.
    extern crate std;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;
    use crate::{
        csum::{addr_sum_v4, addr_sum_v6, ones_eq},
        reference::ref_sum,
    };

    /// RFC 1624 eqn. 3, word by word: HC' = ~(~HC + ~m + m').
    fn rfc1624(hc: u16, old: &[u8], new: &[u8]) -> u16 {
        let mut hc = hc;
        for (m, m2) in old.chunks(2).zip(new.chunks(2)) {
            let m = u16::from_be_bytes([m[0], m[1]]);
            let m2 = u16::from_be_bytes([m2[0], m2[1]]);
            hc = !ref_sum(&[&(!hc).to_be_bytes(), &(!m).to_be_bytes(), &m2.to_be_bytes()]);
        }
        hc
    }

    #[derive(Debug, Clone)]
    struct Udp {
        src: Vec<u8>,
        dst: Vec<u8>,
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    }

    impl Udp {
        fn len(&self) -> u16 {
            u16::try_from(8 + self.payload.len()).unwrap()
        }

        /// The folded pseudo-header sum (what a partial field holds).
        fn pseudo(&self) -> u16 {
            ref_sum(&[&self.src, &self.dst, &[0, 17], &self.len().to_be_bytes()])
        }

        fn segment(&self, field: u16) -> Vec<u8> {
            let mut s = Vec::new();
            s.extend(self.sport.to_be_bytes());
            s.extend(self.dport.to_be_bytes());
            s.extend(self.len().to_be_bytes());
            s.extend(field.to_be_bytes());
            s.extend(&self.payload);
            s
        }

        fn checksum(&self) -> u16 {
            // Summed apart: an odd-length segment would shift the pseudo-header's words.
            !ones_add(ref_sum(&[&self.segment(0)]), self.pseudo())
        }

        /// A device completing a partial field: the sum of the segment with the field in place.
        fn complete(&self, partial: u16) -> u16 {
            !ref_sum(&[&self.segment(partial)])
        }

        fn addr_sum(a: &[u8]) -> u16 {
            match a.len() {
                4 => addr_sum_v4(a.try_into().unwrap()),
                _ => addr_sum_v6(a.try_into().unwrap()),
            }
        }

        /// The destination rewritten to `to` (and the port, if given), and the contributions
        /// before and after under `sig`.
        fn dnat(&self, sig: Signature, to: &[u8], port: Option<u16>) -> (Self, u16, u16) {
            let mut after = self.clone();
            after.dst = to.to_vec();
            if let Some(p) = port {
                after.dport = p;
            }
            let orig = sig.contribution(Some(Self::addr_sum(&self.dst)), port.map(|_| self.dport));
            let cur = sig.contribution(Some(Self::addr_sum(to)), port);
            (after, orig, cur)
        }

        /// The words a NAT replaces: the destination address, and the port if it changes.
        fn words(&self, port: bool) -> Vec<u8> {
            let mut w = self.dst.clone();
            if port {
                w.extend(self.dport.to_be_bytes());
            }
            w
        }
    }

    fn check(sig: Signature, before: &Udp, to: &[u8], port: Option<u16>) {
        let (after, orig, cur) = before.dnat(sig, to, port);
        let nat = |field| {
            rfc1624(
                field,
                &before.words(port.is_some()),
                &after.words(port.is_some()),
            )
        };
        let seen = match sig {
            Signature::StaleAfterRewrite => ones_sub(before.checksum(), after.checksum()),
            Signature::PartialLeftAlone => ones_sub(before.pseudo(), after.pseudo()),
            Signature::PartialUpdatedAsComplete => ones_sub(nat(before.pseudo()), after.pseudo()),
            Signature::CompletedAfterPartialUpdatedAsComplete => {
                ones_sub(after.complete(nat(before.pseudo())), after.checksum())
            }
            Signature::AbsentChecksumUpdated => nat(0),
        };
        assert!(
            ones_eq(seen, sig.constant(orig, cur)),
            "{sig:?}: seen {seen:#06x}, formula {:#06x}",
            sig.constant(orig, cur)
        );
        assert!(ones_eq(sig.original(seen, cur), orig), "{sig:?}: inverse");
    }

    fn udp(src: &[u8], dst: &[u8], payload: Vec<u8>) -> Udp {
        Udp {
            src: src.to_vec(),
            dst: dst.to_vec(),
            sport: 41895,
            dport: 80,
            payload,
        }
    }

    proptest! {
        #[test]
        fn every_signature_matches_its_formula_v4(
            src: [u8; 4], vip: [u8; 4], pod: [u8; 4], port in proptest::option::of(1u16..),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let before = udp(&src, &vip, payload);
            for sig in Signature::ALL {
                // A port rewrite alone leaves a left-alone partial checksum right: nothing to see.
                check(sig, &before, &pod, port);
            }
        }

        #[test]
        fn every_signature_matches_its_formula_v6(
            src: [u8; 16], vip: [u8; 16], pod: [u8; 16], port in proptest::option::of(1u16..),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let before = udp(&src, &vip, payload);
            for sig in Signature::ALL {
                check(sig, &before, &pod, port);
            }
        }
    }

    /// The Windows/OVS Service case with its real numbers: VIP 10.96.0.10:80 DNATed to the
    /// endpoint 10.244.1.7:8080, the partial checksum updated as if complete, then completed by
    /// the NIC: every segment is off by `2·(cur_addr - orig_addr) + (cur_port - orig_port)`.
    #[test]
    fn the_ovs_windows_service_case() {
        let before = udp(
            &[10, 244, 2, 5],
            &[10, 96, 0, 10],
            b"GET / HTTP/1.1".to_vec(),
        );
        let sig = Signature::CompletedAfterPartialUpdatedAsComplete;
        check(sig, &before, &[10, 244, 1, 7], Some(8080));
        let d = sig.constant(
            sig.contribution(Some(addr_sum_v4([10, 96, 0, 10])), Some(80)),
            sig.contribution(Some(addr_sum_v4([10, 244, 1, 7])), Some(8080)),
        );
        let once = ones_sub(addr_sum_v4([10, 244, 1, 7]), addr_sum_v4([10, 96, 0, 10]));
        assert!(ones_eq(
            d,
            ones_add(ones_add(once, once), ones_sub(8080, 80))
        ));
        // Not the 1x shape the stale rule tests.
        assert!(!ones_eq(d, ones_add(once, ones_sub(8080, 80))));
    }

    #[test]
    fn a_port_rewrite_alone_leaves_a_left_alone_partial_checksum_right() {
        assert!(!Signature::PartialLeftAlone.covers(Rewritten::Port));
        assert!(!Signature::PartialLeftAlone.covers(Rewritten::AddrPort));
        let sig = Signature::PartialLeftAlone;
        assert_eq!(sig.contribution(None, Some(8080)), 0);
        for other in Signature::ALL {
            assert!(other == sig || other.covers(Rewritten::Port));
        }
    }
}
