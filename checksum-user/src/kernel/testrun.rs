//! Runs frames through the loaded kernel program with `BPF_PROG_TEST_RUN` and collects the verdicts
//! it reports. `replay`, the tests and the benchmarks all go through here.

use std::time::Duration;

use aya::{
    maps::{MapData, RingBuf},
    programs::{TestRun, TestRunOptions},
};
use checksum_common::{Counters, Hook, SourceKey, source::REPLAY_NETNS};

use crate::{
    kernel::loader::{AUDIT_TC_EGRESS, AUDIT_TC_INGRESS, LoadError, LoadOptions, Loaded, NOOP_TC},
    model::{Captured, Verdict},
};

pub use crate::kernel::loader::audit_program;

/// `XDP_PASS` from linux/bpf.h.
const XDP_PASS: u32 = 2;
/// `TC_ACT_UNSPEC` (-1, `TCX_NEXT`) as the test run reports it.
const TC_ACT_UNSPEC: u32 = u32::MAX;

/// Socket-buffer fields a TC test run may set (`struct __sk_buff` as `ctx_in`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SkbMeta {
    pub gso_segs: u32,
    pub gso_size: u32,
}

impl SkbMeta {
    /// Offsets in `struct __sk_buff` (linux/bpf.h, stable UAPI; pointers are 8-byte slots).
    const GSO_SEGS: usize = 164;
    const GSO_SIZE: usize = 176;
    /// `sizeof(struct __sk_buff)`; the kernel insists fields it does not accept are zero.
    const LEN: usize = 192;

    fn to_sk_buff(self) -> Vec<u8> {
        let mut b = vec![0u8; Self::LEN];
        b[Self::GSO_SEGS..Self::GSO_SEGS + 4].copy_from_slice(&self.gso_segs.to_ne_bytes());
        b[Self::GSO_SIZE..Self::GSO_SIZE + 4].copy_from_slice(&self.gso_size.to_ne_bytes());
        b
    }
}

/// Shortest frame XDP test runs accept (an Ethernet header).
pub const MIN_FRAME: usize = 14;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("frame of {0} bytes is shorter than an Ethernet header")]
    TooShort(usize),
    #[error("BPF_PROG_TEST_RUN failed: {0}")]
    Kernel(String),
    #[error("the program returned {0}, not XDP_PASS: it must never drop or redirect")]
    NotPass(u32),
    #[error("{0}")]
    Decode(#[from] crate::kernel::event::DecodeError),
}

/// The sources frames are run at: test runs happen on the loopback device of the current
/// namespace, at XDP and TC alike.
fn test_run_sources() -> impl Iterator<Item = SourceKey> {
    Hook::ALL.into_iter().map(test_run_source)
}

fn test_run_source(hook: Hook) -> SourceKey {
    let lo = crate::kernel::attach::ifindex_of("lo").unwrap_or(1);
    SourceKey::new(0, lo, hook)
}

/// A source of XDP test runs with counters of its own (see [`FrameAuditor::count_as`]): replay
/// makes one per capture interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CountedSource(u32);

impl CountedSource {
    fn key(self) -> SourceKey {
        SourceKey::new(REPLAY_NETNS, self.0, Hook::Xdp)
    }
}

pub struct FrameAuditor {
    loaded: Loaded,
    events: RingBuf<MapData>,
    kernel_log: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Sources added with `add_counted_source`.
    counted: Vec<CountedSource>,
}

impl FrameAuditor {
    pub fn new(report_all: bool) -> Result<Self, LoadError> {
        Self::with_options(&LoadOptions {
            report_all,
            ..LoadOptions::default()
        })
    }

    /// With `kernel_log`, the program's aya-log messages reach the `log` crate after every frame.
    pub fn with_options(opts: &LoadOptions) -> Result<Self, LoadError> {
        let mut loaded = Loaded::load(opts)?;
        let flags = if opts.report_offload {
            checksum_common::source::SOURCE_REPORT_OFFLOAD
        } else {
            0
        };
        for key in test_run_sources() {
            loaded
                .add_source(key, flags)
                .map(drop)
                .map_err(|e| LoadError::Other(format!("adding the test-run source: {e:#}")))?;
        }
        let events = loaded.take_events()?;
        let kernel_log = if opts.kernel_log {
            loaded.start_kernel_log()
        } else {
            None
        };
        Ok(Self {
            loaded,
            events,
            kernel_log,
            counted: Vec::new(),
        })
    }

    /// Loads (verifies) the XDP audit program now rather than on the first frame: a program the
    /// kernel refuses is then one error before any frame, not a failure of every frame.
    pub fn verify(&mut self) -> Result<(), LoadError> {
        self.loaded.xdp(audit_program(Hook::Xdp)).map(drop)
    }

    /// A new source with counters of its own, for XDP test runs after `count_as` names it.
    ///
    /// # Panics
    /// Past 2^32 counted sources (the source table refuses far fewer).
    pub fn add_counted_source(&mut self) -> Result<CountedSource, LoadError> {
        let source = CountedSource(
            u32::try_from(self.counted.len()).expect("fewer counted sources than MAX_SOURCES"),
        );
        self.loaded
            .add_source(source.key(), 0)
            .map_err(|e| LoadError::Other(format!("adding a counted source: {e:#}")))?;
        self.counted.push(source);
        Ok(source)
    }

    /// Counts the XDP test runs that follow in `source`'s counters, or in the test-run source's
    /// again with `None`.
    pub fn count_as(&mut self, source: Option<CountedSource>) -> Result<(), RunError> {
        let device = test_run_source(Hook::Xdp);
        let target = source.map_or(device, CountedSource::key);
        self.loaded
            .count_as(&device, &target)
            .map_err(|e| RunError::Kernel(format!("{e:#}")))
    }

    /// The counters of a counted source, summed over the CPUs.
    pub fn counted_source_counters(&mut self, source: CountedSource) -> Counters {
        self.loaded.source_counters(&source.key())
    }

    /// Verifies the audit program of `hook` now, if it is not yet, and returns the instructions
    /// the verifier processed for it (`None` before Linux 5.16, which does not tell).
    pub fn verified_instructions(&mut self, hook: Hook) -> Result<Option<u32>, LoadError> {
        let name = audit_program(hook);
        let info = if hook == Hook::Xdp {
            self.loaded.xdp(name)?.info()
        } else {
            self.loaded.tc(name)?.info()
        };
        Ok(info.ok().and_then(|i| i.verified_instruction_count()))
    }

    /// Runs one frame through the XDP audit program and returns every verdict it reported.
    pub fn audit(&mut self, frame: &[u8]) -> Result<Vec<Verdict>, RunError> {
        self.audit_at(Hook::Xdp, frame, &SkbMeta::default())
    }

    /// Runs one frame through the audit program of `hook`; `skb` sets socket-buffer fields the
    /// TC programs read (ignored for XDP).
    pub fn audit_at(
        &mut self,
        hook: Hook,
        frame: &[u8],
        skb: &SkbMeta,
    ) -> Result<Vec<Verdict>, RunError> {
        Ok(self
            .audit_captured(hook, frame, skb)?
            .into_iter()
            .map(|(v, _)| v)
            .collect())
    }

    /// Like `audit_at`, with the frame bytes each verdict carries: `Some` for mismatches when the
    /// auditor was loaded with a `snaplen` (`with_options`), `None` otherwise.
    pub fn audit_captured(
        &mut self,
        hook: Hook,
        frame: &[u8],
        skb: &SkbMeta,
    ) -> Result<Vec<(Verdict, Option<Captured>)>, RunError> {
        self.run(audit_program(hook), frame, 1, *skb)?;
        if let Some(logger) = &mut self.kernel_log {
            logger.flush();
        }
        let mut verdicts = Vec::new();
        while let Some(record) = self.events.next() {
            verdicts.push(Verdict::decode_with_capture(&record)?);
        }
        Ok(verdicts)
    }

    /// Mean time per run of `program` on `frame` over `repeat` runs (benchmarks).
    pub fn time(&mut self, program: &str, frame: &[u8], repeat: u32) -> Result<Duration, RunError> {
        let d = self.run(program, frame, repeat, SkbMeta::default())?;
        // Keep the ring buffer from filling up with the benchmark's events.
        while self.events.next().is_some() {}
        Ok(d)
    }

    fn run(
        &mut self,
        program: &str,
        frame: &[u8],
        repeat: u32,
        skb: SkbMeta,
    ) -> Result<Duration, RunError> {
        if frame.len() < MIN_FRAME {
            return Err(RunError::TooShort(frame.len()));
        }
        // With its causes: aya's syscall errors keep the errno in `source()`.
        let kernel = |e: &dyn std::error::Error| {
            let mut text = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                text = format!("{text}: {c}");
                cause = c.source();
            }
            RunError::Kernel(text)
        };
        let is_tc = [AUDIT_TC_INGRESS, AUDIT_TC_EGRESS, NOOP_TC].contains(&program);
        let ctx = skb.to_sk_buff();
        let opts = TestRunOptions {
            data_in: Some(frame),
            ctx_in: is_tc.then_some(&ctx[..]),
            repeat,
            ..TestRunOptions::default()
        };
        let result = if is_tc {
            self.loaded
                .tc(program)
                .map_err(|e| kernel(&e))?
                .test_run(opts)
        } else {
            self.loaded
                .xdp(program)
                .map_err(|e| kernel(&e))?
                .test_run(opts)
        }
        .map_err(|e| kernel(&e))?;
        let passed = if is_tc {
            result.return_value == TC_ACT_UNSPEC
        } else {
            result.return_value == XDP_PASS
        };
        if !passed {
            return Err(RunError::NotPass(result.return_value));
        }
        Ok(result.duration)
    }

    /// Removes the test-run sources: later frames are counted as unattributed.
    pub fn forget_sources(&mut self) {
        // Route XDP back first, so that no entry names a counted source's slot once it is free.
        if let Err(e) = self.count_as(None) {
            log::warn!("{e}");
        }
        for key in test_run_sources() {
            self.loaded.remove_source(&key);
        }
    }

    /// Counters of frames whose source is not in the map.
    pub fn unattributed(&mut self) -> Counters {
        self.loaded.unattributed()
    }

    /// Counters of every frame run so far, over all hooks.
    pub fn counters(&mut self) -> Counters {
        self.loaded.counters()
    }
}
