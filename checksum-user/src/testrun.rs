//! Runs frames through the loaded kernel program with BPF_PROG_TEST_RUN and collects the verdicts
//! it reports. `replay`, the tests and the benchmarks all go through here.

use std::time::Duration;

use aya::{
    maps::{MapData, RingBuf},
    programs::{TestRun, TestRunOptions},
};
use checksum_common::Counters;

use crate::{
    event::Verdict,
    loader::{AUDIT_XDP, LoadError, LoadOptions, Loaded},
};

/// `XDP_PASS` from linux/bpf.h.
const XDP_PASS: u32 = 2;

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
    Decode(#[from] crate::event::DecodeError),
}

pub struct FrameAuditor {
    loaded: Loaded,
    events: RingBuf<MapData>,
    kernel_log: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
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
        })
    }

    /// Runs one frame through the audit program and returns every verdict it reported, in order.
    pub fn audit(&mut self, frame: &[u8]) -> Result<Vec<Verdict>, RunError> {
        self.run(AUDIT_XDP, frame, 1)?;
        if let Some(logger) = &mut self.kernel_log {
            logger.flush();
        }
        let mut verdicts = Vec::new();
        while let Some(record) = self.events.next() {
            verdicts.push(Verdict::decode(&record)?);
        }
        Ok(verdicts)
    }

    /// Mean time per run of `program` on `frame` over `repeat` runs (benchmarks).
    pub fn time(&mut self, program: &str, frame: &[u8], repeat: u32) -> Result<Duration, RunError> {
        let d = self.run(program, frame, repeat)?;
        // Keep the ring buffer from filling up with the benchmark's events.
        while self.events.next().is_some() {}
        Ok(d)
    }

    fn run(&mut self, program: &str, frame: &[u8], repeat: u32) -> Result<Duration, RunError> {
        if frame.len() < MIN_FRAME {
            return Err(RunError::TooShort(frame.len()));
        }
        let prog = self
            .loaded
            .xdp(program)
            .map_err(|e| RunError::Kernel(e.to_string()))?;
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..TestRunOptions::default()
            })
            .map_err(|e| RunError::Kernel(format!("{e:#}")))?;
        if result.return_value != XDP_PASS {
            return Err(RunError::NotPass(result.return_value));
        }
        Ok(result.duration)
    }

    pub fn counters(&self) -> Counters {
        self.loaded.counters().unwrap_or_default()
    }
}
