//! Differential testing of the kernel program against an independent reference verifier.
//!
//! Every frame comes from its own seed ([`rng::frame_seed`]), goes through the loaded program with
//! `BPF_PROG_TEST_RUN`, and its verdicts and counters are compared with what [`reference::judge`]
//! expects. The integration test `tests/differential.rs` runs a fixed-seed sample; `cargo xtask
//! fuzz` runs as many frames as asked and keeps a pcap of every disagreement.

pub mod generate;
pub mod judged;
pub mod known;
pub mod reference;
#[cfg(test)]
mod reference_tests;
pub mod rng;

use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use checksum_common::{Counters, Hook, Layer, Status, encap::EncapKind};

use checksum_user::kernel::testrun::{FrameAuditor, RunError, SkbMeta};
use judged::{Outcome, differences};

/// Every this many frames, one also goes through a TC program (alternately ingress and egress):
/// the hooks share the parser, so a sample of them is enough.
pub const TC_EVERY: u64 = 16;

/// A TC test run takes one page of linear data at most (see xtask bench).
pub const TC_MAX_FRAME: usize = 3500;

/// Whether a TC test run accepts the frame: besides the size, Linux refuses an skb whose
/// ethertype says IPv4 or IPv6 but that is shorter than that IP header (EINVAL). A limit of the
/// harness, not of the program: XDP test runs take them.
pub fn tc_accepts(frame: &[u8]) -> bool {
    let ip_header = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => 20,
        0x86dd => 40,
        _ => 0,
    };
    frame.len() <= TC_MAX_FRAME && frame.len() >= 14 + ip_header
}

/// One frame on which the kernel and the reference disagree.
#[derive(Debug, Clone)]
pub struct Disagreement {
    pub frame_seed: u64,
    pub hook: Hook,
    pub label: String,
    pub frame: Vec<u8>,
    pub expected: Outcome,
    pub observed: Outcome,
    /// Why, when this is a listed kernel issue ([`known::explain`]).
    pub known: Option<&'static str>,
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "frame seed {:#018x} ({} bytes, {}): {}",
            self.frame_seed,
            self.frame.len(),
            self.hook.name(),
            self.label
        )?;
        if let Some(why) = self.known {
            writeln!(f, "  known kernel issue: {why}")?;
        }
        writeln!(f, "  reference:\n{}", self.expected)?;
        writeln!(f, "  kernel:\n{}", self.observed)?;
        let diff = differences(&self.expected, &self.observed).unwrap_or_default();
        writeln!(f, "  differences:\n    {}", diff.replace('\n', "\n    "))?;
        write!(
            f,
            "  replay: cargo xtask fuzz --replay {:#018x}",
            self.frame_seed
        )
    }
}

/// Runs frames through the kernel program and keeps the counters between runs, so that each run
/// costs one counter read.
pub struct Runner<'a> {
    auditor: &'a mut FrameAuditor,
    last: Counters,
    /// Frames longer than this are left out of `run` (see `linear_only`).
    max_frame: usize,
}

impl<'a> Runner<'a> {
    pub fn new(auditor: &'a mut FrameAuditor) -> Self {
        let last = auditor.counters();
        Self {
            auditor,
            last,
            max_frame: usize::MAX,
        }
    }

    /// Leaves out of `run` the frames an XDP test run would hand over in fragments (longer than
    /// `TC_MAX_FRAME`): the build for kernels before 5.18 has no XDP fragments (their frames are
    /// all linear), and Linux 5.10 refuses such a test run.
    #[must_use]
    pub fn linear_only(mut self) -> Self {
        self.max_frame = TC_MAX_FRAME;
        self
    }

    /// The kernel's outcome for one frame at `hook`.
    pub fn observe(&mut self, hook: Hook, frame: &[u8]) -> Result<Outcome, RunError> {
        let verdicts = self.auditor.audit_at(hook, frame, &SkbMeta::default())?;
        let now = self.auditor.counters();
        let delta = now.since(&self.last);
        self.last = now;
        Ok(Outcome::observed(&verdicts, &delta))
    }

    /// Generates the frame of `frame_seed`, runs it at `hook` and compares.
    pub fn check(&mut self, frame_seed: u64, hook: Hook) -> Result<Checked, RunFailure> {
        self.check_generated(frame_seed, generate::generate(frame_seed), hook)
    }

    fn check_generated(
        &mut self,
        frame_seed: u64,
        g: generate::Generated,
        hook: Hook,
    ) -> Result<Checked, RunFailure> {
        let expected = reference::judge(&g.bytes);
        let observed = self.observe(hook, &g.bytes).map_err(|error| RunFailure {
            frame_seed,
            hook,
            len: g.bytes.len(),
            label: g.label.clone(),
            error,
        })?;
        let disagreement = (expected != observed).then(|| Disagreement {
            frame_seed,
            hook,
            known: known::explain(&g.bytes, &expected, &observed),
            label: g.label,
            frame: g.bytes,
            expected: expected.clone(),
            observed,
        });
        Ok(Checked {
            expected,
            disagreement,
        })
    }

    /// Frames `indices` of the run `run_seed`, every one at XDP and every `tc_every`-th (that a
    /// TC test run accepts) at a TC hook too, alternating ingress and egress.
    pub fn run(
        &mut self,
        run_seed: u64,
        indices: Range<u64>,
        tc_every: u64,
        mut on_disagreement: impl FnMut(&Disagreement),
    ) -> Result<Stats, RunFailure> {
        let mut stats = Stats::default();
        for i in indices {
            let seed = rng::frame_seed(run_seed, i);
            let g = generate::generate(seed);
            if g.bytes.len() > self.max_frame {
                stats.left_out += 1;
                continue;
            }
            let mut hooks = vec![Hook::Xdp];
            if tc_every != 0 && i.is_multiple_of(tc_every) && tc_accepts(&g.bytes) {
                hooks.push(if (i / tc_every).is_multiple_of(2) {
                    Hook::TcIngress
                } else {
                    Hook::TcEgress
                });
            }
            stats.frames += 1;
            for hook in hooks {
                let checked = self.check_generated(seed, g.clone(), hook)?;
                stats.count(hook, &checked);
                if let Some(d) = &checked.disagreement {
                    on_disagreement(d);
                }
            }
        }
        Ok(stats)
    }
}

/// A frame the kernel could not be asked about: the run stops, since the harness is broken.
#[derive(Debug, thiserror::Error)]
#[error("frame seed {frame_seed:#018x} ({len} bytes, {}: {label}): {error}", hook.name())]
pub struct RunFailure {
    pub frame_seed: u64,
    pub hook: Hook,
    pub len: usize,
    pub label: String,
    #[source]
    pub error: RunError,
}

/// One frame's reference outcome and, when the kernel differs, how.
pub struct Checked {
    pub expected: Outcome,
    pub disagreement: Option<Disagreement>,
}

/// Figures of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames: u64,
    /// Frames `Runner::linear_only` left out.
    pub left_out: u64,
    /// Test runs: every frame at XDP, some at TC too.
    pub runs: u64,
    pub tc_runs: u64,
    /// Disagreements nobody has explained: each is a failure.
    pub disagreements: u64,
    /// Disagreements that are listed kernel issues, by explanation.
    pub known: Vec<(&'static str, u64)>,
    pub malformed: u64,
    pub not_ip: u64,
    /// Tunnelled frames (the reference's `encapsulated`; frames, not test runs), by tunnel kind
    /// where a verdict names it, and those whose inner packet is malformed.
    pub encapsulated: u64,
    pub tunnels: [u64; EncapKind::COUNT],
    pub inner_malformed: u64,
    /// Reference verdicts about inner packets by `[layer][status]` (also in `verdicts`).
    pub inner_verdicts: [[u64; Status::COUNT]; Layer::COUNT],
    /// Reference verdicts by `[layer][status]`: what the sample covered.
    pub verdicts: [[u64; Status::COUNT]; Layer::COUNT],
    /// Bad reference verdicts by kind.
    pub kinds: [u64; checksum_common::Kind::COUNT],
}

impl Stats {
    fn count(&mut self, hook: Hook, c: &Checked) {
        self.runs += 1;
        if hook != Hook::Xdp {
            self.tc_runs += 1;
        }
        self.malformed += u64::from(c.expected.malformed);
        self.not_ip += u64::from(c.expected.not_ip);
        if hook == Hook::Xdp {
            // Every frame runs at XDP once: these are frame counts.
            self.encapsulated += u64::from(c.expected.encapsulated);
            self.inner_malformed += u64::from(c.expected.inner_malformed);
            if let Some(e) = c.expected.verdicts.iter().find_map(|v| v.encap) {
                self.tunnels[e.kind as usize] += 1;
            }
        }
        for v in &c.expected.verdicts {
            self.verdicts[v.layer as usize][v.status as usize] += 1;
            if v.inner {
                self.inner_verdicts[v.layer as usize][v.status as usize] += 1;
            }
            if let Some(k) = v.kind {
                self.kinds[k as usize] += 1;
            }
        }
        match c.disagreement.as_ref().map(|d| d.known) {
            None => {}
            Some(None) => self.disagreements += 1,
            Some(Some(why)) => match self.known.iter_mut().find(|(w, _)| *w == why) {
                Some((_, n)) => *n += 1,
                None => self.known.push((why, 1)),
            },
        }
    }

    pub fn add(&mut self, other: &Stats) {
        self.frames += other.frames;
        self.left_out += other.left_out;
        self.runs += other.runs;
        self.tc_runs += other.tc_runs;
        self.disagreements += other.disagreements;
        for (why, n) in &other.known {
            match self.known.iter_mut().find(|(w, _)| w == why) {
                Some((_, m)) => *m += n,
                None => self.known.push((why, *n)),
            }
        }
        self.malformed += other.malformed;
        self.not_ip += other.not_ip;
        self.encapsulated += other.encapsulated;
        self.inner_malformed += other.inner_malformed;
        for (m, t) in self.tunnels.iter_mut().zip(other.tunnels.iter()) {
            *m += t;
        }
        for (mine, theirs) in self
            .verdicts
            .iter_mut()
            .chain(self.inner_verdicts.iter_mut())
            .zip(other.verdicts.iter().chain(other.inner_verdicts.iter()))
        {
            for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                *m += t;
            }
        }
        for (m, t) in self.kinds.iter_mut().zip(other.kinds.iter()) {
            *m += t;
        }
    }

    pub fn known_total(&self) -> u64 {
        self.known.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} frames, {} test runs ({} at TC): {} unexplained disagreements, {} known",
            self.frames,
            self.runs,
            self.tc_runs,
            self.disagreements,
            self.known_total()
        )?;
        for (why, n) in &self.known {
            writeln!(f, "  known {n}: {why}")?;
        }
        writeln!(
            f,
            "  reference outcomes: {} malformed, {} not IP",
            self.malformed, self.not_ip
        )?;
        write!(
            f,
            "  tunnelled frames: {} ({} inner malformed):",
            self.encapsulated, self.inner_malformed
        )?;
        for kind in &EncapKind::ALL[1..] {
            write!(f, " {} {}", kind.name(), self.tunnels[*kind as usize])?;
        }
        writeln!(f)?;
        for (what, verdicts) in [("", &self.verdicts), ("inner ", &self.inner_verdicts)] {
            for layer in Layer::ALL {
                let by = &verdicts[layer as usize];
                write!(f, "  {what}{:<7}", layer.name())?;
                for status in Status::ALL {
                    write!(f, " {} {:<8}", status.name(), by[status as usize])?;
                }
                writeln!(f)?;
            }
        }
        write!(f, "  bad by kind:")?;
        for kind in checksum_common::Kind::MISMATCHES {
            write!(f, " {} {}", kind.name(), self.kinds[kind as usize])?;
        }
        Ok(())
    }
}

/// Writes the frame of a disagreement as a one-packet pcap file named after its seed.
pub fn write_pcap(dir: &Path, d: &Disagreement) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("disagreement-{:016x}.pcap", d.frame_seed));
    std::fs::write(&path, crate::frames::pcap_file(1, &[&d.frame]))?;
    Ok(path)
}
