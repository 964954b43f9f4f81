//! Per-CPU counters. One `Counters` value lives in a per-CPU array at index 0; user space sums the
//! CPUs. Nothing is dropped without being counted here.

use crate::event::{Kind, Layer, Status};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames the program ran on.
    pub packets: u64,
    /// Frames that are not IPv4/IPv6 (ARP, LLDP, ...).
    pub not_ip: u64,
    /// Frames with inconsistent lengths or headers. Counted, never reported as mismatches.
    pub malformed: u64,
    /// Events that could not be written because the ring buffer was full.
    pub events_lost: u64,
    /// Events not sent because their flow and kind had used up `--events-per-flow` (still
    /// counted in `mismatches`).
    pub events_sampled_out: u64,
    /// GSO/GRO super-packets (TC only): checked per segment elsewhere, never reported.
    pub gso_aggregate: u64,
    /// Good verdicts sent because their flow was tracked (a hook saw it broken).
    pub tracked_reports: u64,
    /// Broken flows that could not be tracked: the tracked-flow map was full.
    pub tracking_full: u64,
    /// Frames whose UDP destination port and header make them a tunnel (`encap`): their inner
    /// packet is audited too.
    pub encapsulated: u64,
    /// Tunnelled frames whose inner packet is inconsistent or cut short (not in `malformed`,
    /// which is for the outer headers).
    pub inner_malformed: u64,
    /// Checks by `[layer][status]`, outer and inner alike.
    pub checks: [[u64; Status::COUNT]; Layer::COUNT],
    /// The checks of inner packets among `checks`, by `[layer][status]`.
    pub inner_checks: [[u64; Status::COUNT]; Layer::COUNT],
    /// Mismatches by `[layer][kind]` (`Kind::Match`, index 0, stays 0).
    pub mismatches: [[u64; Kind::COUNT]; Layer::COUNT],
}

impl Counters {
    /// Adds another CPU's counters.
    pub fn accumulate(&mut self, other: &Counters) {
        self.packets += other.packets;
        self.not_ip += other.not_ip;
        self.malformed += other.malformed;
        self.events_lost += other.events_lost;
        self.events_sampled_out += other.events_sampled_out;
        self.gso_aggregate += other.gso_aggregate;
        self.tracked_reports += other.tracked_reports;
        self.tracking_full += other.tracking_full;
        self.encapsulated += other.encapsulated;
        self.inner_malformed += other.inner_malformed;
        for (mine, theirs) in self
            .checks
            .iter_mut()
            .chain(self.inner_checks.iter_mut())
            .zip(other.checks.iter().chain(other.inner_checks.iter()))
        {
            for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                *m += t;
            }
        }
        for (mine, theirs) in self.mismatches.iter_mut().zip(other.mismatches.iter()) {
            for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                *m += t;
            }
        }
    }

    /// What was counted between `earlier` and `self` (rates, per-test deltas).
    #[must_use]
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut d = *self;
        d.packets = d.packets.saturating_sub(earlier.packets);
        d.not_ip = d.not_ip.saturating_sub(earlier.not_ip);
        d.malformed = d.malformed.saturating_sub(earlier.malformed);
        d.events_lost = d.events_lost.saturating_sub(earlier.events_lost);
        d.events_sampled_out = d
            .events_sampled_out
            .saturating_sub(earlier.events_sampled_out);
        d.gso_aggregate = d.gso_aggregate.saturating_sub(earlier.gso_aggregate);
        d.tracked_reports = d.tracked_reports.saturating_sub(earlier.tracked_reports);
        d.tracking_full = d.tracking_full.saturating_sub(earlier.tracking_full);
        d.encapsulated = d.encapsulated.saturating_sub(earlier.encapsulated);
        d.inner_malformed = d.inner_malformed.saturating_sub(earlier.inner_malformed);
        for (mine, theirs) in d
            .checks
            .iter_mut()
            .chain(d.inner_checks.iter_mut())
            .zip(earlier.checks.iter().chain(earlier.inner_checks.iter()))
        {
            for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                *m = m.saturating_sub(*t);
            }
        }
        for (mine, theirs) in d.mismatches.iter_mut().zip(earlier.mismatches.iter()) {
            for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                *m = m.saturating_sub(*t);
            }
        }
        d
    }

    pub fn check(&self, layer: Layer, status: Status) -> u64 {
        self.checks[layer as usize][status as usize]
    }

    /// The checks of `layer` with `status` in tunnels' inner packets (a part of `check`).
    pub fn inner_check(&self, layer: Layer, status: Status) -> u64 {
        self.inner_checks[layer as usize][status as usize]
    }

    /// Mismatches of `kind` over all layers.
    pub fn mismatch(&self, kind: Kind) -> u64 {
        self.mismatches
            .iter()
            .map(|by_kind| by_kind[kind as usize])
            .sum()
    }

    pub fn layer_mismatch(&self, layer: Layer, kind: Kind) -> u64 {
        self.mismatches[layer as usize][kind as usize]
    }
}

#[cfg(feature = "user")]
// SAFETY: `repr(C)`, only u64 fields, no padding.
unsafe impl aya::Pod for Counters {}
