//! Live auditing: attach to interfaces, drain the ring buffers, aggregate, print.

use std::{
    collections::HashMap,
    io::Write,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use checksum_common::{Hook, Kind};
use serde_json::{Value, json};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinSet,
};

use crate::{
    aggregate::{Aggregator, Key},
    attach::{Attachment, attach},
    cli::{Format, LiveArgs},
    event::{Verdict, hex},
    loader::LoadOptions,
    output::{self, Clock, Source},
    severity::{IfaceClass, Severity, severity},
};

/// Moves records from one ring buffer to the aggregator until told to stop, then drains what is
/// left so that the final summary misses nothing.
async fn read_events(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Verdict>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    // SAFETY: the ring buffer owns its fd and keeps it open, unreplaced, while the AsyncFd lives.
    let mut fd = unsafe { AsyncFd::register(ring) }.context("watching the ring buffer")?;
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &tx).await;
                guard.clear_ready();
            }
            _ = stop.changed() => {
                drain(fd.get_mut(), &tx).await;
                return Ok(());
            }
        }
    }
}

async fn drain(ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<Verdict>) {
    loop {
        let decoded = match ring.next() {
            Some(record) => Verdict::decode(&record),
            None => return,
        };
        match decoded {
            Ok(v) => {
                if tx.send(v).await.is_err() {
                    return;
                }
            }
            Err(e) => log::warn!("{e}"),
        }
    }
}

/// How many lines text output prints per flow and kind; the rest are counted in the summary.
const TEXT_LINES_PER_FLOW: u64 = 3;
const SUMMARY_FLOWS: usize = 20;

/// What the printer knows about an audited interface.
struct IfaceInfo {
    name: String,
    class: IfaceClass,
}

struct Printer<'a> {
    args: &'a LiveArgs,
    clock: Clock,
    ifaces: HashMap<u32, IfaceInfo>,
    agg: Aggregator,
    started: Instant,
}

impl Printer<'_> {
    fn iface_name(&self, ifindex: u32) -> String {
        self.ifaces
            .get(&ifindex)
            .map_or_else(|| format!("if{ifindex}"), |i| i.name.clone())
    }

    fn severity(&self, kind: Kind, hook: Hook, ifindex: u32) -> Severity {
        let unknown = IfaceClass::Physical;
        severity(
            kind,
            hook,
            self.ifaces.get(&ifindex).map_or(&unknown, |i| &i.class),
        )
    }

    fn on_verdict(&mut self, v: &Verdict, out: &mut impl Write) -> Result<()> {
        self.agg.add(v);
        let sev = self.severity(v.kind, v.hook, v.ifindex);
        // Partial checksums where they are normal are counted, and listed only on request.
        if v.kind == Kind::OffloadPending && sev == Severity::Expected && !self.args.show_offload {
            return Ok(());
        }
        match self.args.format {
            Format::Json => {
                let mut m = v.json_fields();
                m.insert("iface".into(), json!(self.iface_name(v.ifindex)));
                m.insert("hook".into(), json!(v.hook.name()));
                m.insert("ts".into(), json!(self.clock.rfc3339(v.timestamp_ns)));
                m.insert("severity".into(), json!(sev.name()));
                m.insert("direction".into(), json!(v.direction.name()));
                m.insert("ip_id".into(), json!(v.ip_id));
                m.insert("tcp_seq".into(), json!(v.tcp_seq));
                m.insert("pseudo".into(), json!(hex(v.pseudo)));
                m.insert("len".into(), json!(v.l4_len));
                writeln!(out, "{}", Value::Object(m))?;
            }
            Format::Text => {
                let key = Key {
                    ifindex: v.ifindex,
                    hook: v.hook,
                    layer: v.layer,
                    flow: v.flow,
                    kind: v.kind,
                };
                let seen = self.agg.count(&key);
                if seen <= TEXT_LINES_PER_FLOW {
                    writeln!(
                        out,
                        "{} {:<12} {:<10} {:<8} {}{}",
                        self.clock.rfc3339(v.timestamp_ns),
                        self.iface_name(v.ifindex),
                        v.hook.name(),
                        sev.name(),
                        output::verdict_text(v),
                        if seen == TEXT_LINES_PER_FLOW {
                            "  (more of this flow are counted in the summary)"
                        } else {
                            ""
                        },
                    )?;
                }
            }
        }
        Ok(())
    }

    fn summary(&self, attachments: &[Attachment], last: bool, out: &mut impl Write) -> Result<()> {
        let elapsed = self.started.elapsed();
        let names = |i| self.iface_name(i);
        let sev = |k: &Key| self.severity(k.kind, k.hook, k.ifindex);
        let sources: Vec<_> = attachments
            .iter()
            .map(|a| Source {
                name: &a.iface,
                hook: a.hook.name(),
                mode: a.mode,
                class: a.class.name(),
                counters: a.counters(),
            })
            .collect();
        match self.args.format {
            Format::Json => {
                let summary = json!({
                    "type": "summary",
                    "final": last,
                    "elapsed_s": elapsed.as_secs_f64(),
                    "interfaces": sources.iter().map(output::source_json).collect::<Vec<_>>(),
                    "flows": output::flows_json(&self.agg, &names, &sev, &self.clock),
                    "untracked": self.agg.untracked,
                });
                writeln!(out, "{summary}")?;
            }
            Format::Text => {
                writeln!(
                    out,
                    "--- {} summary after {} ---",
                    if last { "final" } else { "checksum-audit" },
                    output::elapsed_text(elapsed)
                )?;
                for s in &sources {
                    write!(out, "{}", output::source_text(s))?;
                }
                write!(
                    out,
                    "{}",
                    output::flows_text(
                        &self.agg,
                        &names,
                        &sev,
                        &self.clock,
                        SUMMARY_FLOWS,
                        self.args.show_offload
                    )
                )?;
            }
        }
        out.flush()?;
        Ok(())
    }
}

pub async fn run(args: &LiveArgs, kernel_log: bool) -> Result<()> {
    if args.ifaces.is_empty() {
        anyhow::bail!(
            "no interface given: pass --iface IF (list them with `ip link`), or use `checksum-audit replay FILE`"
        );
    }
    let opts = LoadOptions {
        ring_bytes: args.ring_buffer_size,
        kernel_log,
        report_offload: args.show_offload,
        ..LoadOptions::default()
    };
    // Signals first: a SIGTERM during attach must still run the cleanup below.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;

    let (tx, mut rx) = mpsc::channel::<Verdict>(16 * 1024);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    let mut loggers = JoinSet::new();
    let mut attachments: Vec<Attachment> = Vec::new();
    let mut hooks: Vec<Hook> = args.hooks.iter().map(|h| h.hook()).collect();
    hooks.dedup();
    for iface in &args.ifaces {
        for &hook in &hooks {
            if attachments
                .iter()
                .any(|a| &a.iface == iface && a.hook == hook)
            {
                continue;
            }
            // On error, the attachments made so far are dropped, which detaches them.
            let (mut att, ring) = attach(iface, hook, args.xdp_mode, &opts)?;
            if kernel_log && let Some(logger) = att.start_kernel_log() {
                loggers.spawn(forward_kernel_log(logger));
            }
            eprintln!(
                "checksum-audit: auditing {} (ifindex {}, {}) at {} ({})",
                att.iface,
                att.ifindex,
                att.class.name(),
                hook.name(),
                att.mode
            );
            readers.spawn(read_events(ring, tx.clone(), stop_rx.clone()));
            attachments.push(att);
        }
    }
    drop(tx);
    if let Some(path) = &args.ready_file {
        std::fs::write(path, b"ready\n")
            .with_context(|| format!("writing --ready-file {}", path.display()))?;
    }

    let mut printer = Printer {
        args,
        clock: Clock::new(),
        ifaces: attachments
            .iter()
            .map(|a| {
                (
                    a.ifindex,
                    IfaceInfo {
                        name: a.iface.clone(),
                        class: a.class.clone(),
                    },
                )
            })
            .collect(),
        agg: Aggregator::default(),
        started: Instant::now(),
    };
    let mut stdout = std::io::stdout().lock();
    let deadline = tokio::time::sleep(
        args.duration
            .unwrap_or(Duration::from_secs(100 * 365 * 86_400)),
    );
    tokio::pin!(deadline);
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
    loop {
        tokio::select! {
            Some(v) = rx.recv() => printer.on_verdict(&v, &mut stdout)?,
            _ = ticker.tick() => printer.summary(&attachments, false, &mut stdout)?,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut deadline => break,
        }
    }

    // Detach first so no new events arrive, then drain everything that is left.
    for att in &mut attachments {
        att.detach();
    }
    let _ = stop_tx.send(true);
    while let Some(result) = readers.join_next().await {
        if let Ok(Err(e)) = result {
            log::warn!("event reader: {e:#}");
        }
    }
    while let Ok(v) = rx.try_recv() {
        printer.on_verdict(&v, &mut stdout)?;
    }
    loggers.abort_all();
    printer.summary(&attachments, true, &mut stdout)?;
    Ok(())
}

async fn forward_kernel_log(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the logger owns its ring buffer fd for as long as the AsyncFd lives.
    let Ok(mut fd) = (unsafe { AsyncFd::register(logger) }) else {
        return;
    };
    while let Ok(mut guard) = fd.readable_mut().await {
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}
