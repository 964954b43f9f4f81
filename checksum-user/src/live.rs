//! Live auditing: attach to interfaces, drain the ring buffers, aggregate, print.

use std::{
    collections::HashMap,
    ffi::CString,
    io::Write,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::{
    maps::{MapData, RingBuf},
    programs::{ProgramError, XdpMode, xdp::XdpLinkId},
};
use checksum_common::Kind;
use serde_json::{Value, json};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinSet,
};

use crate::{
    aggregate::{Aggregator, Key},
    cli::{Format, LiveArgs, XdpModeArg},
    event::Verdict,
    loader::{AUDIT_XDP, LoadOptions, Loaded},
    output::{self, Clock, Source},
    xdp_slot::{XdpHolder, xdp_holder},
};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(
        "unknown interface '{0}': no such device in this network namespace (list them with `ip link`)"
    )]
    UnknownInterface(String),
    #[error(
        "the XDP slot of {iface} is taken by {holder}; checksum-audit never replaces another program. \
         Audit another interface, or detach that program if it is yours"
    )]
    SlotTaken { iface: String, holder: XdpHolder },
    #[error("{iface}: the driver refused native XDP ({reason}); use --xdp-mode auto or generic")]
    NativeRefused { iface: String, reason: String },
    #[error("{iface}: attaching XDP failed: {reason}")]
    Other { iface: String, reason: String },
}

/// One interface we attached to. Dropping it detaches the program (links are fd-based, so the
/// kernel also detaches them if the process dies, even by SIGKILL).
pub struct Attachment {
    pub iface: String,
    pub ifindex: u32,
    /// "native" or "generic".
    pub mode: &'static str,
    loaded: Loaded,
    link: Option<XdpLinkId>,
}

impl Attachment {
    pub fn detach(&mut self) {
        if let Some(link) = self.link.take()
            && let Ok(prog) = self.loaded.xdp(AUDIT_XDP)
            && let Err(e) = prog.detach(link)
        {
            log::warn!("{}: detach failed: {e}", self.iface);
        }
    }

    pub fn counters(&self) -> checksum_common::Counters {
        self.loaded.counters().unwrap_or_default()
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.detach();
    }
}

pub fn ifindex_of(iface: &str) -> Result<u32, AttachError> {
    let name = CString::new(iface).map_err(|_| AttachError::UnknownInterface(iface.into()))?;
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(AttachError::UnknownInterface(iface.into())),
        i => Ok(i),
    }
}

fn is_busy(e: &ProgramError) -> bool {
    let io = match e {
        ProgramError::SyscallError(s) => Some(&s.io_error),
        _ => None,
    };
    matches!(
        io.and_then(std::io::Error::raw_os_error),
        Some(libc::EBUSY) | Some(libc::EEXIST)
    ) || e.to_string().contains("busy")
}

/// Loads a fresh copy of the programs and attaches it to `iface`.
pub fn attach(
    iface: &str,
    mode: XdpModeArg,
    opts: &LoadOptions,
) -> Result<(Attachment, RingBuf<MapData>)> {
    let ifindex = ifindex_of(iface)?;
    let slot_taken = |holder| AttachError::SlotTaken {
        iface: iface.into(),
        holder,
    };
    if let Some(holder) = xdp_holder(ifindex)
        .with_context(|| format!("{iface}: reading its XDP state over rtnetlink"))?
    {
        return Err(slot_taken(holder).into());
    }
    let mut loaded = Loaded::load(opts)?;
    let events = loaded.take_events()?;
    let prog = loaded.xdp(AUDIT_XDP)?;
    let attempts: &[(XdpMode, &'static str)] = match mode {
        XdpModeArg::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
        XdpModeArg::Native => &[(XdpMode::Driver, "native")],
        XdpModeArg::Generic => &[(XdpMode::Skb, "generic")],
    };
    let mut last_err = None;
    for &(xdp_mode, name) in attempts {
        match prog.attach(ifindex, xdp_mode) {
            Ok(link) => {
                if last_err.is_some() {
                    eprintln!(
                        "checksum-audit: {iface}: native XDP refused ({}); using generic mode",
                        last_err.unwrap_or_default()
                    );
                }
                let att = Attachment {
                    iface: iface.into(),
                    ifindex,
                    mode: name,
                    loaded,
                    link: Some(link),
                };
                return Ok((att, events));
            }
            Err(e) if is_busy(&e) => {
                // Someone attached between our check and our attach.
                let holder = xdp_holder(ifindex).ok().flatten().unwrap_or(XdpHolder {
                    prog_id: 0,
                    name: None,
                });
                return Err(slot_taken(holder).into());
            }
            Err(e) => last_err = Some(format!("{e:#}")),
        }
    }
    let reason = last_err.unwrap_or_default();
    Err(match mode {
        XdpModeArg::Native => AttachError::NativeRefused {
            iface: iface.into(),
            reason,
        },
        _ => AttachError::Other {
            iface: iface.into(),
            reason,
        },
    }
    .into())
}

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

struct Printer<'a> {
    args: &'a LiveArgs,
    clock: Clock,
    names: HashMap<u32, String>,
    agg: Aggregator,
    started: Instant,
}

impl Printer<'_> {
    fn iface_name(&self, ifindex: u32) -> String {
        self.names
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("if{ifindex}"))
    }

    fn on_verdict(&mut self, v: &Verdict, out: &mut impl Write) -> Result<()> {
        self.agg.add(v);
        if v.kind == Kind::OffloadPending && !self.args.show_offload {
            return Ok(());
        }
        match self.args.format {
            Format::Json => {
                let mut m = v.json_fields();
                m.insert("iface".into(), json!(self.iface_name(v.ifindex)));
                m.insert("hook".into(), json!(v.hook.name()));
                m.insert("ts".into(), json!(self.clock.rfc3339(v.timestamp_ns)));
                m.insert("direction".into(), json!(v.direction.name()));
                m.insert("ip_id".into(), json!(v.ip_id));
                m.insert("tcp_seq".into(), json!(v.tcp_seq));
                m.insert("pseudo".into(), json!(crate::event::hex(v.pseudo)));
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
                let seen = self
                    .agg
                    .rows()
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or(0, |(_, e)| e.count);
                if seen <= TEXT_LINES_PER_FLOW {
                    writeln!(
                        out,
                        "{} {:<12} {}{}",
                        self.clock.rfc3339(v.timestamp_ns),
                        self.iface_name(v.ifindex),
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
        let sources: Vec<_> = attachments
            .iter()
            .map(|a| Source {
                name: &a.iface,
                hook: "xdp",
                mode: a.mode,
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
                    "flows": output::flows_json(&self.agg, &names, &self.clock),
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
    for iface in &args.ifaces {
        if attachments.iter().any(|a| &a.iface == iface) {
            continue;
        }
        // On error, the attachments made so far are dropped, which detaches them.
        let (mut att, ring) = attach(iface, args.xdp_mode, &opts)?;
        if kernel_log && let Some(logger) = att.loaded.start_kernel_log() {
            loggers.spawn(forward_kernel_log(logger));
        }
        eprintln!(
            "checksum-audit: auditing {} (ifindex {}, XDP {} mode)",
            att.iface, att.ifindex, att.mode
        );
        readers.spawn(read_events(ring, tx.clone(), stop_rx.clone()));
        attachments.push(att);
    }
    drop(tx);
    if let Some(path) = &args.ready_file {
        std::fs::write(path, b"ready\n")
            .with_context(|| format!("writing --ready-file {}", path.display()))?;
    }

    let mut printer = Printer {
        args,
        clock: Clock::new(),
        names: attachments
            .iter()
            .map(|a| (a.ifindex, a.iface.clone()))
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
