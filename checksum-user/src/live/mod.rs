//! Live auditing: the programs are loaded once; namespace workers attach them to interfaces as
//! they match; this task drains the one ring buffer, aggregates, prints, and detaches everything
//! on the way out.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    analysis::{SourceId, candidates::Candidates},
    cli::{Format, LiveArgs},
    kernel::{
        attach::AttachError,
        drops::{KernelDrop, Symbolizer},
        ring,
    },
    model::{Captured, Verdict},
    net::select::{Selector, is_pattern},
    pcap::sink::CaptureSink,
    report::{
        metrics,
        view::{self, LiveView},
    },
};

mod follow;
mod printer;
mod setup;
mod sources;

use follow::{Update, WorkerConfig, spawn_worker};

use crate::kube::Cluster;
use printer::Printer;
use setup::{Kernel, StopSignals, check_privileges, load_kernel, open_outputs, targets};
use sources::{DropNaming, Raw, Run};

/// A verdict with the source it was seen at.
type Received = (SourceId, Verdict, Option<Captured>);

/// A live run; `agent`: as the node agent (JSON lines, Kubernetes in-cluster, Events).
pub async fn run(args: &LiveArgs, kernel_log: bool, agent: bool) -> Result<()> {
    let agent_args = agent.then(|| agent_stream(args));
    let args = agent_args.as_ref().unwrap_or(args);
    let (namespaces, hooks) = targets(args)?;
    check_privileges(!args.netns.is_empty())?;
    let (capture, metrics, candidates) = open_outputs(args).await?;
    let mut cluster = match setup::cluster_options(args, agent)? {
        Some(opts) => Some(Cluster::start(&opts).await?),
        None => None,
    };
    // Signals first: a SIGTERM while loading or attaching must still run the cleanup below.
    let mut stop = StopSignals {
        int: signal(SignalKind::interrupt())?,
        term: signal(SignalKind::terminate())?,
    };
    let netns_by_device = namespaces.len() > 1;
    let Kernel {
        shared: kernel,
        ring,
        logger,
        drops,
    } = load_kernel(args, &hooks, kernel_log, netns_by_device)?;
    let drop_naming = drops.config.map(|config| DropNaming {
        config,
        symbols: Symbolizer::default(),
    });
    let config = Arc::new(WorkerConfig {
        selector: Selector {
            patterns: args.ifaces.clone(),
            all: args.all_interfaces,
        },
        hooks,
        xdp_mode: args.xdp_mode.into(),
        show_offload: args.show_offload,
        kernel: kernel.clone(),
        netns_by_device,
    });

    let (events_tx, mut events_rx) = mpsc::channel::<Raw>(16 * 1024);
    let (stop_reader, stop_reader_rx) = watch::channel(false);
    let reader = tokio::spawn(ring::read_events(ring, events_tx, stop_reader_rx.clone()));
    // Without the drop program, a channel that stays empty: the loop below needs no special case.
    let (drops_tx, mut drops_rx) = mpsc::channel::<KernelDrop>(4096);
    let drop_reader = drops
        .ring
        .map(|r| tokio::spawn(ring::read_drops(r, drops_tx, stop_reader_rx)));
    let logger = logger.map(|l| tokio::spawn(ring::forward_kernel_log(l)));
    let (updates_tx, mut updates_rx) = mpsc::unbounded_channel::<Update>();
    let stop_workers = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            spawn_worker(
                i,
                ns.clone(),
                config.clone(),
                updates_tx.clone(),
                stop_workers.clone(),
            )
        })
        .collect();
    drop(updates_tx);
    let mut run = Run::new(namespaces, kernel, drop_naming, drops.tracing);
    let result = audit(
        args,
        &mut run,
        Inputs {
            events: &mut events_rx,
            drops: &mut drops_rx,
            updates: &mut updates_rx,
        },
        &mut stop,
        metrics.as_ref().map(|(shared, _)| shared.clone()),
        capture,
        Nat {
            file: candidates,
            cluster: cluster.as_mut(),
            agent,
        },
    )
    .await;
    drop(cluster);
    if let Some((_, server)) = metrics {
        server.abort();
    }

    // Stop following, detach everything, then drain what is left so the summary misses nothing.
    stop_workers.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    while let Ok(update) = updates_rx.try_recv() {
        if let Update::Attached { ns, attachment } = update {
            // Attached just before the stop: it is detached below with the rest, and its
            // verdicts are attributed.
            run.add(ns, *attachment);
        }
    }
    for s in &mut run.sources {
        s.detach();
    }
    let _ = stop_reader.send(true);
    join_readers(reader, drop_reader, logger).await;
    print_the_rest(result?, &mut run, &mut events_rx, &mut drops_rx)
}

/// Waits for the ring readers to drain and end (they were told to stop).
async fn join_readers(
    reader: tokio::task::JoinHandle<Result<()>>,
    drop_reader: Option<tokio::task::JoinHandle<Result<()>>>,
    logger: Option<tokio::task::JoinHandle<()>>,
) {
    match reader.await {
        Ok(Err(e)) => log::warn!("event reader: {e:#}"),
        Err(e) => log::warn!("event reader: {e}"),
        Ok(Ok(())) => {}
    }
    if let Some(drop_reader) = drop_reader
        && let Ok(Err(e)) = drop_reader.await
    {
        log::warn!("kernel-drop reader: {e:#}");
    }
    if let Some(logger) = logger {
        logger.abort();
    }
}

/// The agent's stream is for log shippers: JSON lines whatever `--format` says, lifecycle too.
fn agent_stream(args: &LiveArgs) -> LiveArgs {
    crate::report::notice::set_json_lines(true);
    let mut args = args.clone();
    args.format = Format::Json;
    args
}

/// The cluster's changes since the last look (and the interfaces of this namespace attached
/// now, for their pods), into the analysis.
fn take_cluster_changes(
    cluster: Option<&mut Cluster>,
    file: Option<&Candidates>,
    run: &Run,
    printer: &mut Printer,
) {
    let mut interfaces: Vec<(u32, String)> = run
        .sources
        .iter()
        .filter(|s| s.attachment.is_some() && run.namespaces[s.ns].label.is_empty())
        .map(|s| (s.ifindex, s.iface.clone()))
        .collect();
    interfaces.sort();
    interfaces.dedup();
    if let Some((candidates, names)) = cluster.and_then(|c| c.changed(file, &interfaces)) {
        printer.analysis.set_nat_candidates(&candidates);
        printer.analysis.set_endpoint_names(names);
    }
}

/// After the stop: what was still in flight, then the final summary.
fn print_the_rest(
    mut printer: Printer,
    run: &mut Run,
    events_rx: &mut mpsc::Receiver<Raw>,
    drops_rx: &mut mpsc::Receiver<KernelDrop>,
) -> Result<()> {
    // Sources attached just before the stop, too.
    printer.register_sources(&run.sources);
    let mut stdout = std::io::stdout().lock();
    // Every source is known by now: what is still pending, or names no source, never will be.
    let mut received: Vec<Received> = run.resolved_pending();
    while let Ok(raw) = events_rx.try_recv() {
        received.extend(run.resolve(raw));
    }
    run.unattributed_events += run.pending.len() as u64;
    for r in &received {
        printer.on_verdict(r, &mut stdout)?;
    }
    while let Ok(d) = drops_rx.try_recv() {
        let seen = run.describe_drop(&d);
        printer.on_drop(&seen, &mut stdout)?;
    }
    run.refresh(&mut printer.analysis);
    printer.summary(&run.lifecycle, true, &mut stdout)?;
    if run.unattributed_events > 0 {
        eprintln!(
            "checksum-audit: warning: {} events named no audited interface (counted, not shown)",
            run.unattributed_events
        );
    }
    Ok(())
}

/// Where NAT candidates and pod names come from: `--nat-candidates`, and the cluster when one
/// is followed.
struct Nat<'c> {
    file: Option<Candidates>,
    cluster: Option<&'c mut Cluster>,
    agent: bool,
}

/// The metrics snapshot now, with the cluster's part.
fn snapshot(printer: &Printer, run: &Run, cluster: Option<&Cluster>) -> metrics::Snapshot {
    let mut snapshot = printer.metrics_snapshot(&run.lifecycle);
    snapshot.cluster = cluster.map(Cluster::metrics);
    snapshot
}

/// What the event loop listens to besides signals and timers.
struct Inputs<'r> {
    events: &'r mut mpsc::Receiver<Raw>,
    drops: &'r mut mpsc::Receiver<KernelDrop>,
    updates: &'r mut mpsc::UnboundedReceiver<Update>,
}

/// After every namespace's first scan: the checks that need it, then the run says it is ready
/// (`--ready-file`, and `/readyz` at once rather than at the first refresh).
fn become_ready(
    args: &LiveArgs,
    run: &mut Run,
    printer: &mut Printer,
    metrics: Option<&metrics::Shared>,
    cluster: Option<&Cluster>,
) -> Result<()> {
    // A name without wildcards is a promise that the interface exists (in some namespace).
    for literal in args.ifaces.iter().filter(|p| !is_pattern(p)) {
        if !run.sources.iter().any(|s| &s.iface == literal) {
            let err = AttachError::UnknownInterface(literal.clone());
            return Err(if args.netns.is_empty() {
                err.into()
            } else {
                anyhow::Error::new(err)
                    .context(format!("in network namespaces {}", args.netns.join(", ")))
            });
        }
    }
    if run.sources.is_empty() {
        crate::report::notice::info(
            "waiting",
            "no interface matches yet; waiting for one to appear",
        );
    }
    if let Some(path) = &args.ready_file {
        std::fs::write(path, b"ready\n")
            .with_context(|| format!("writing --ready-file {}", path.display()))?;
    }
    if let Some(shared) = metrics
        && let Ok(mut snapshot) = shared.lock()
    {
        run.refresh(&mut printer.analysis);
        *snapshot = self::snapshot(printer, run, cluster);
    }
    crate::report::notice::info("ready", "every program of the first scan is attached");
    Ok(())
}

/// Until the end: attach what the workers found, print events and summaries.
async fn audit<'a>(
    args: &'a LiveArgs,
    run: &mut Run,
    Inputs {
        events: events_rx,
        drops: drops_rx,
        updates: updates_rx,
    }: Inputs<'_>,
    stop: &mut StopSignals,
    metrics: Option<metrics::Shared>,
    capture: Option<CaptureSink>,
    Nat {
        file: candidates,
        mut cluster,
        agent,
    }: Nat<'_>,
) -> Result<Printer<'a>> {
    let view = (args.format == Format::Text && view::stdout_is_terminal()).then(LiveView::new);
    let mut printer = Printer::new(args, view, capture, run.skb_state.clone());
    if agent {
        printer.agent_mode();
    }
    if let Some(c) = &candidates {
        printer.analysis.add_nat_candidates(c);
    }
    let mut stdout = std::io::stdout().lock();
    // Phase 1: every namespace's first scan, so that errors stop the run before it is "ready".
    let mut pending = run.namespaces.len();
    while pending > 0 {
        tokio::select! {
            update = updates_rx.recv() => match update {
                Some(Update::Attached { ns, attachment }) => {
                    run.add(ns, *attachment);
                    printer.register_sources(&run.sources);
                },
                Some(Update::Ready { ns, cookie, snmp }) => {
                    run.ready(ns, cookie, snmp);
                    pending -= 1;
                }
                Some(Update::Failed { ns, error, .. }) => return Err(run.in_namespace(ns, error)),
                Some(Update::Vanished { ns, ifindex, iface }) => run.vanished(ns, ifindex, &iface),
                Some(Update::NamespaceGone { ns }) => run.namespace_gone(ns),
                None => anyhow::bail!("interface workers stopped unexpectedly"),
            },
            () = stop.recv() => return Ok(printer),
        }
    }
    become_ready(
        args,
        run,
        &mut printer,
        metrics.as_ref(),
        cluster.as_deref(),
    )?;
    // Phase 2: steady state.
    let deadline = tokio::time::sleep(args.duration.unwrap_or(crate::cli::MAX_DURATION));
    tokio::pin!(deadline);
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
    let mut redraw = tokio::time::interval(Duration::from_secs(1));
    // Metrics are refreshed once a second: kernel counters are read then, not per scrape.
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    // The cluster's changes (pods, Services) are taken at most once a second.
    let mut cluster_tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            Some(raw) = events_rx.recv() => {
                if let Some(received) = run.resolve(raw) {
                    printer.on_verdict(&received, &mut stdout)?;
                }
            }
            Some(d) = drops_rx.recv() => {
                let seen = run.describe_drop(&d);
                printer.on_drop(&seen, &mut stdout)?;
            }
            Some(update) = updates_rx.recv() => match update {
                Update::Attached { ns, attachment } => {
                    run.add(ns, *attachment);
                    printer.register_sources(&run.sources);
                    for received in run.resolved_pending() {
                        printer.on_verdict(&received, &mut stdout)?;
                    }
                },
                Update::Vanished { ns, ifindex, iface } => run.vanished(ns, ifindex, &iface),
                Update::NamespaceGone { ns } => run.namespace_gone(ns),
                // A worker that ended on an error no longer follows its namespace: nothing new
                // there would be audited, so the run stops (cleanly) rather than go on blind.
                Update::Failed { ns, error, fatal: true } => return Err(run.in_namespace(ns, error)),
                Update::Failed { ns, error, fatal: false } => run.warn(ns, error),
                Update::Ready { ns, cookie, snmp } => run.ready(ns, cookie, snmp),
            },
            _ = ticker.tick(), if printer.view.is_none() => {
                run.refresh(&mut printer.analysis);
                printer.summary(&run.lifecycle, false, &mut stdout)?;
                if let Some(cluster) = cluster.as_deref() {
                    cluster.report(&printer.analysis);
                }
            }
            _ = cluster_tick.tick(), if cluster.is_some() => {
                take_cluster_changes(cluster.as_deref_mut(), candidates.as_ref(), run, &mut printer);
            }
            _ = redraw.tick(), if printer.view.is_some() => {
                run.refresh(&mut printer.analysis);
                printer.draw(&mut stdout)?;
            }
            _ = refresh.tick(), if metrics.is_some() => {
                run.refresh(&mut printer.analysis);
                if let Some(shared) = &metrics && let Ok(mut snapshot) = shared.lock() {
                    *snapshot = self::snapshot(&printer, run, cluster.as_deref());
                }
            }
            () = stop.recv() => break,
            () = &mut deadline => break,
        }
    }
    Ok(printer)
}
