//! `checksum-audit replay FILE`: every frame of a capture, in order, through the same kernel
//! program (`BPF_PROG_TEST_RUN`), reported like live auditing.

use std::{
    fs::File,
    io::{BufReader, Write},
    path::Path,
};

use anyhow::{Context as _, Result, bail};
use checksum_common::{Hook, Status};
use serde_json::json;

use crate::{
    analysis::{
        Analysis, SourceFacts, SourceId, SourceStatus,
        severity::{Basis, Severity},
    },
    cli::{Format, ReplayArgs},
    kernel::loader::LoadOptions,
    kernel::testrun::{CountedSource, FrameAuditor, MIN_FRAME, RunError},
    model::Verdict,
    net::iface::IfaceClass,
    pcap::read::{CaptureError, CaptureReader, Record, supported, to_ethernet},
    report::{
        json,
        output::{self, Source},
    },
    sys::clock::Clock,
};

/// What happened to the frames of a file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    pub frames: u64,
    pub audited: u64,
    /// Shorter than a link-layer header.
    pub too_short: u64,
    /// Refused by `BPF_PROG_TEST_RUN` (e.g. larger than it accepts).
    pub not_run: u64,
}

/// Opens a capture with an error that names the file and says what to do.
pub fn open_capture(path: &Path) -> Result<CaptureReader<BufReader<File>>> {
    let file =
        File::open(path).with_context(|| format!("cannot open capture file {}", path.display()))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        bail!(
            "cannot read capture file {}: it is a directory",
            path.display()
        );
    }
    let reader = CaptureReader::new(BufReader::new(file)).map_err(|e| match e {
        CaptureError::Io(io) => {
            anyhow::Error::new(io).context(format!("cannot read capture file {}", path.display()))
        }
        other => anyhow::anyhow!("{}: {other}", path.display()),
    })?;
    if let Some(lt) = reader.pcap_linktype()
        && !supported(lt)
    {
        bail!(
            "{}: {}",
            path.display(),
            CaptureError::UnsupportedLinkType(lt)
        );
    }
    Ok(reader)
}

/// The Ethernet frame replay runs for a captured record; `None` when it is shorter than a
/// link-layer header or than `MIN_FRAME` (counted as too short).
pub fn replay_frame(record: &Record) -> Result<Option<Vec<u8>>, CaptureError> {
    Ok(to_ethernet(record.linktype, &record.data)?.filter(|f| f.len() >= MIN_FRAME))
}

/// The capture's interfaces, each a source of the analysis with kernel counters of its own.
struct CaptureSources {
    /// By the records' `interface`: its source id and counted source, once it has had a frame.
    by_interface: Vec<Option<(SourceId, CountedSource)>>,
    /// The interface the kernel counts test runs for now.
    current: Option<u32>,
}

impl CaptureSources {
    /// The source of interface `interface`, registered and routed to on first use.
    fn route(
        &mut self,
        interface: u32,
        reader: &CaptureReader<BufReader<File>>,
        file: &Path,
        analysis: &mut Analysis,
        auditor: &mut FrameAuditor,
    ) -> Result<SourceId> {
        let i = interface as usize;
        if self.by_interface.len() <= i {
            self.by_interface.resize(i + 1, None);
        }
        let (id, counted) = if let Some(known) = self.by_interface[i] {
            known
        } else {
            let counted = auditor.add_counted_source()?;
            // A capture of one interface is named by its file, as it always was; one of several
            // by each interface's name in the file (or its number).
            let name = match reader.interface_name(interface) {
                Some(name) => name.to_owned(),
                None if reader.interface_count() == 1 => file.display().to_string(),
                None => format!("if{interface}"),
            };
            // Where a capture was taken is unknown: partial checksums count as expected.
            let id = analysis.add_source(SourceFacts {
                name,
                hook: Hook::Xdp,
                class: IfaceClass::Virtual("capture".into()),
                mode: "test-run",
                namespace: 0,
            });
            self.by_interface[i] = Some((id, counted));
            (id, counted)
        };
        if self.current != Some(interface) {
            auditor.count_as(Some(counted))?;
            self.current = Some(interface);
        }
        Ok(id)
    }

    /// Copies each interface's kernel counters into the analysis.
    fn refresh(&self, analysis: &mut Analysis, auditor: &mut FrameAuditor) {
        for &(id, counted) in self.by_interface.iter().flatten() {
            analysis.set_status(
                id,
                SourceStatus {
                    counters: auditor.counted_source_counters(counted),
                    attached: true,
                    gone: None,
                },
            );
        }
    }
}

/// Replays `args.file`, writing verdict lines and a summary to `out`.
pub fn replay(args: &ReplayArgs, kernel_log: bool, out: &mut dyn Write) -> Result<ReplayStats> {
    let mut reader = open_capture(&args.file)?;
    let candidates =
        crate::analysis::candidates::Candidates::load_option(args.nat_candidates.as_deref())?;
    // Load only after the file checks out, so a bad path fails fast and without privileges.
    let mut auditor = FrameAuditor::with_options(&LoadOptions {
        report_all: true,
        kernel_log,
        tunnel_ports: args.tunnels.table().map_err(anyhow::Error::msg)?,
        ..LoadOptions::default()
    })?;
    // Before any frame: a refused program is one error, not a warning per frame and a summary
    // of nothing audited that reads as an all-clear.
    auditor.verify()?;
    let mut stats = ReplayStats::default();
    // The same pipeline as live auditing, with each of the capture's interfaces as a source.
    // Every verdict, matching or not, feeds the diagnosis: the pre-rewrite flow is usually fine.
    let mut analysis = Analysis::default();
    if let Some(c) = &candidates {
        analysis.add_nat_candidates(c);
    }
    // The first frame the kernel's test run failed for, and why.
    let mut first_failure: Option<(u64, RunError)> = None;
    let mut sources = CaptureSources {
        by_interface: Vec::new(),
        current: None,
    };
    loop {
        let record = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", args.file.display())),
        };
        stats.frames += 1;
        let packet = stats.frames;
        let frame = match replay_frame(&record) {
            Ok(Some(f)) => f,
            Ok(None) => {
                stats.too_short += 1;
                continue;
            }
            Err(e) => bail!("{}: packet {packet}: {e}", args.file.display()),
        };
        let source = sources.route(
            record.interface,
            &reader,
            &args.file,
            &mut analysis,
            &mut auditor,
        )?;
        let verdicts = match auditor.audit(&frame) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("packet {packet}: not audited: {e}");
                stats.not_run += 1;
                first_failure.get_or_insert((packet, e));
                continue;
            }
        };
        stats.audited += 1;
        for v in &verdicts {
            analysis.observe(source, v);
            if args.all || v.status == Status::Bad {
                write_verdict(out, args.format, packet, v)?;
            }
        }
    }
    if stats.audited == 0
        && let Some((packet, e)) = first_failure
    {
        // Frames were given to the kernel and none came back audited: an error, not a summary
        // of zero mismatches.
        bail!(
            "{}: no frame was audited: the kernel's test run failed for all {} frames given to \
             it; the first, packet {packet}: {e}",
            args.file.display(),
            stats.not_run,
        );
    }
    sources.refresh(&mut analysis, &mut auditor);
    write_summary(out, args, &stats, &auditor.counters(), &analysis)?;
    Ok(stats)
}

fn write_verdict(out: &mut dyn Write, format: Format, packet: u64, v: &Verdict) -> Result<()> {
    match format {
        Format::Json => {
            writeln!(
                out,
                "{}",
                json::verdict_line(v, json::Seen::Replay { packet })
            )?;
        }
        Format::Text => writeln!(out, "#{packet:<6} {}", output::verdict_text(v))?,
    }
    Ok(())
}

fn write_summary(
    out: &mut dyn Write,
    args: &ReplayArgs,
    stats: &ReplayStats,
    counters: &checksum_common::Counters,
    analysis: &Analysis,
) -> Result<()> {
    let name = args.file.display().to_string();
    // The whole file; with several interfaces each has its own block too.
    let total = Source {
        name: &name,
        hook: "xdp",
        mode: "test-run",
        class: "capture",
        offload: Severity::Expected,
        basis: Basis::InterfaceClass,
        counters: *counters,
    };
    let interfaces: Vec<Source> = analysis
        .sources()
        .map(|(id, _, _)| Source::of(analysis, id))
        .collect();
    let diagnoses = analysis.diagnoses();
    let clock = Clock::new();
    match args.format {
        Format::Json => {
            let summary = json!({
                "type": "summary",
                "file": name,
                "frames": stats.frames,
                "audited": stats.audited,
                "too_short": stats.too_short,
                "not_run": stats.not_run,
                "counters": output::source_json(&total),
                "interfaces": interfaces.iter().map(output::source_json).collect::<Vec<_>>(),
                "flows": output::flows_json(analysis, &clock),
            });
            for d in &diagnoses {
                writeln!(out, "{}", output::diagnosis_json(analysis, d))?;
            }
            writeln!(out, "{summary}")?;
        }
        Format::Text => {
            writeln!(
                out,
                "\n{} frames, {} audited, {} too short, {} refused by the kernel test run",
                stats.frames, stats.audited, stats.too_short, stats.not_run
            )?;
            write!(out, "{}", output::source_text(&total))?;
            if interfaces.len() > 1 {
                for s in &interfaces {
                    write!(out, "{}", output::source_text(s))?;
                }
            }
            write!(
                out,
                "{}",
                output::diagnoses_text(analysis, &diagnoses, false, 50)
            )?;
        }
    }
    Ok(())
}
