//! `checksum-audit replay FILE`: every frame of a capture, in order, through the same kernel
//! program (BPF_PROG_TEST_RUN), reported like live auditing.

use std::{
    fs::File,
    io::{BufReader, Write},
    path::Path,
};

use anyhow::{Context as _, Result, bail};
use checksum_common::{Hook, Status};
use serde_json::{Value, json};

use crate::{
    analysis::aggregate::Key,
    analysis::diagnosis::FlowDiagnosis,
    analysis::severity::{IfaceClass, Severity},
    analysis::{Analysis, SourceFacts},
    cli::{Format, ReplayArgs},
    kernel::event::Verdict,
    kernel::loader::LoadOptions,
    kernel::testrun::{FrameAuditor, MIN_FRAME},
    pcap::read::{CaptureError, CaptureReader, Record, supported, to_ethernet},
    report::output::{self, Clock, Source},
};

/// What happened to the frames of a file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    pub frames: u64,
    pub audited: u64,
    /// Shorter than a link-layer header.
    pub too_short: u64,
    /// Refused by BPF_PROG_TEST_RUN (e.g. larger than it accepts).
    pub not_run: u64,
}

/// Opens a capture with an error that names the file and says what to do.
pub fn open_capture(path: &Path) -> Result<CaptureReader<BufReader<File>>> {
    let file =
        File::open(path).with_context(|| format!("cannot open capture file {}", path.display()))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
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

/// Replays `args.file`, writing verdict lines and a summary to `out`.
pub fn replay(args: &ReplayArgs, kernel_log: bool, out: &mut dyn Write) -> Result<ReplayStats> {
    let mut reader = open_capture(&args.file)?;
    // Load only after the file checks out, so a bad path fails fast and without privileges.
    let mut auditor = FrameAuditor::with_options(&LoadOptions {
        report_all: true,
        kernel_log,
        ..LoadOptions::default()
    })?;
    let mut stats = ReplayStats::default();
    // The same pipeline as live auditing, with the capture as its one source. Where a capture was
    // taken is unknown: partial checksums count as expected there. Every verdict, matching or
    // not, feeds the diagnosis: the pre-rewrite flow is usually fine.
    let mut analysis = Analysis::default();
    let capture = analysis.add_source(SourceFacts {
        name: "replay".into(),
        hook: Hook::Xdp,
        class: IfaceClass::Virtual("capture".into()),
    });
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
        let verdicts = match auditor.audit(&frame) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("packet {packet}: not audited: {e}");
                stats.not_run += 1;
                continue;
            }
        };
        stats.audited += 1;
        for v in &verdicts {
            analysis.observe(capture, v);
            if args.all || v.status == Status::Bad {
                write_verdict(out, args.format, packet, v)?;
            }
        }
    }
    write_summary(out, args, &stats, auditor.counters(), &analysis)?;
    Ok(stats)
}

fn write_verdict(out: &mut dyn Write, format: Format, packet: u64, v: &Verdict) -> Result<()> {
    match format {
        Format::Json => {
            let mut m = v.json_fields();
            m.insert("packet".into(), json!(packet));
            writeln!(out, "{}", Value::Object(m))?;
        }
        Format::Text => writeln!(out, "#{packet:<6} {}", output::verdict_text(v))?,
    }
    Ok(())
}

fn write_summary(
    out: &mut dyn Write,
    args: &ReplayArgs,
    stats: &ReplayStats,
    counters: checksum_common::Counters,
    analysis: &Analysis,
) -> Result<()> {
    let name = args.file.display().to_string();
    let source = Source {
        name: &name,
        hook: "xdp",
        mode: "test-run",
        class: "capture",
        offload: Severity::Expected,
        counters,
    };
    let no_iface = |i| analysis.name(i);
    let capture_severity = |k: &Key| analysis.key_severity(k);
    let diagnoses = analysis.diagnoses();
    let diagnosis_severity = |d: &FlowDiagnosis| analysis.diagnosis_severity(d);
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
                "counters": output::source_json(&source),
                "flows": output::flows_json(analysis.flows(), &no_iface, &capture_severity, &clock),
            });
            for d in &diagnoses {
                writeln!(out, "{}", output::diagnosis_json(d, diagnosis_severity(d)))?;
            }
            writeln!(out, "{summary}")?;
        }
        Format::Text => {
            writeln!(
                out,
                "\n{} frames, {} audited, {} too short, {} refused by the kernel test run",
                stats.frames, stats.audited, stats.too_short, stats.not_run
            )?;
            write!(out, "{}", output::source_text(&source))?;
            write!(
                out,
                "{}",
                output::diagnoses_text(&diagnoses, &no_iface, &diagnosis_severity, 50)
            )?;
        }
    }
    Ok(())
}
