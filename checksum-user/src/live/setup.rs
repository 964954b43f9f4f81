//! What a live run sets up before its event loop: what the command line asks to audit, its output
//! files and metrics port, the kernel object (loaded and verified once), the privilege check, the
//! ring buffer's size, and the signals that end it.

use std::sync::Arc;

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use checksum_common::{Hook, track::DEFAULT_TRACK_REPORTS};

use crate::{
    analysis::{DropTracing, candidates::Candidates},
    cli::LiveArgs,
    kernel::{
        attach::SharedKernel,
        btf::DropConfig,
        drops,
        loader::{self, LoadOptions, Loaded},
    },
    model::SkbStateUse,
    net::namespace::Namespace,
    pcap::sink::CaptureSink,
    report::metrics,
};

/// The run's kernel object, with its one ring buffer and, with -v, its log.
pub(super) struct Kernel {
    pub(super) shared: SharedKernel,
    pub(super) ring: RingBuf<MapData>,
    pub(super) logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub(super) drops: KernelDropsSetup,
}

/// The kernel-drop program's part: its ring buffer and reason names when it is attached.
pub(super) struct KernelDropsSetup {
    pub(super) tracing: DropTracing,
    pub(super) ring: Option<RingBuf<MapData>>,
    pub(super) config: Option<DropConfig>,
}

/// Loads and verifies the programs once, before anything is attached.
pub(super) fn load_kernel(
    args: &LiveArgs,
    hooks: &[Hook],
    kernel_log: bool,
    netns_by_device: bool,
) -> Result<Kernel> {
    let mut loaded = Loaded::load(&LoadOptions {
        ring_bytes: ring_bytes(args),
        kernel_log,
        events_per_flow: args.events_per_flow,
        snaplen: if args.pcap_out.is_some() {
            args.snaplen
        } else {
            0
        },
        netns_by_device,
        kernel_drops: !args.no_kernel_drops,
        track_reports: DEFAULT_TRACK_REPORTS,
        tunnel_ports: args.tunnels.table().map_err(anyhow::Error::msg)?,
        ..LoadOptions::default()
    })?;
    loaded.load_audit_programs(hooks)?;
    if let SkbStateUse::Unavailable(why) = loaded.skb_state()
        && hooks.iter().any(|h| *h != Hook::Xdp)
    {
        eprintln!(
            "checksum-audit: warning: the skb's checksum state is not read at TC: {why}; severity of partial checksums follows the interface class"
        );
    }
    let ring = loaded.take_events()?;
    let drops = start_kernel_drops(&mut loaded);
    let logger = if kernel_log {
        loaded.start_kernel_log()
    } else {
        None
    };
    // Loading parsed the kernel's BTF (several MiB, in aya and once for our own offsets) and
    // freed it; give those pages back rather than keep them resident for the
    // whole run (glibc keeps freed heap otherwise).
    // SAFETY: malloc_trim only releases free memory at the top of the heap and in free chunks.
    unsafe { libc::malloc_trim(0) };
    Ok(Kernel {
        shared: Arc::new(std::sync::Mutex::new(loaded)),
        ring,
        logger,
        drops,
    })
}

/// Attaches the drop program where asked and possible; where not, says why in one line and the
/// run goes on without it.
fn start_kernel_drops(loaded: &mut Loaded) -> KernelDropsSetup {
    let unavailable = |why: String| {
        eprintln!(
            "checksum-audit: warning: the kernel's checksum drops are not traced: {why} (the audit goes on)"
        );
        KernelDropsSetup {
            tracing: DropTracing::Unavailable(why),
            ring: None,
            config: None,
        }
    };
    let config = match loaded.drop_config().cloned() {
        None => {
            return KernelDropsSetup {
                tracing: DropTracing::Off,
                ring: None,
                config: None,
            };
        }
        Some(Err(why)) => return unavailable(why.to_string()),
        Some(Ok(config)) => config,
    };
    if let Err(e) = drops::attach(loaded) {
        return unavailable(format!("{e:#}"));
    }
    match loaded.take_drops() {
        Ok(ring) => KernelDropsSetup {
            tracing: DropTracing::On { lost: 0 },
            ring: Some(ring),
            config: Some(config),
        },
        Err(e) => unavailable(e.to_string()),
    }
}

/// Before anything is attached: name the missing capability in one line rather than fail on
/// some syscall later (or, with a pattern that matches nothing yet, only when an interface
/// appears).
pub(super) fn check_privileges(netns: bool) -> Result<()> {
    loader::check_privileges()?;
    if netns
        && crate::sys::privileges::effective()
            .is_some_and(|e| !crate::sys::privileges::can_join_netns(e))
    {
        anyhow::bail!(
            "missing privileges: CAP_SYS_ADMIN is not in the effective capability set; --netns needs it to join \
             another network namespace (setns). Without --netns, start checksum-audit inside that namespace"
        );
    }
    Ok(())
}

/// Ring buffer size: as asked, but at least room for a few thousand captured frames with
/// --pcap-out (a capture record holds up to `--snaplen` bytes, not 80).
fn ring_bytes(args: &LiveArgs) -> u32 {
    if args.pcap_out.is_none() || args.ring_buffer_size != crate::kernel::loader::DEFAULT_RING_BYTES
    {
        return args.ring_buffer_size;
    }
    let wanted = crate::kernel::loader::capture_record_bytes(args.snaplen).saturating_mul(2048);
    wanted
        .next_power_of_two()
        .clamp(args.ring_buffer_size, 64 << 20)
}

/// SIGINT and SIGTERM, both meaning "detach, drain, print the final summary, exit".
pub(super) struct StopSignals {
    pub(super) int: tokio::signal::unix::Signal,
    pub(super) term: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub(super) async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// The namespaces and hooks to audit, or why the command line names none.
pub(super) fn targets(args: &LiveArgs) -> Result<(Vec<Namespace>, Vec<Hook>)> {
    if args.ifaces.is_empty() && !args.all_interfaces {
        anyhow::bail!(
            "no interface given: pass --iface IF (names or patterns such as 'veth*'; list them with `ip link`), \
             --all-interfaces, or use `checksum-audit replay FILE`"
        );
    }
    let namespaces = if args.netns.is_empty() {
        vec![Namespace::current()]
    } else {
        args.netns
            .iter()
            .map(|spec| Namespace::parse(spec))
            .collect::<Result<Vec<_>>>()?
    };
    let mut hooks: Vec<Hook> = Vec::new();
    for h in &args.hooks {
        if !hooks.contains(&h.hook()) {
            hooks.push(h.hook());
        }
    }
    Ok((namespaces, hooks))
}

/// `--metrics-addr`: the snapshot the server reads, and its task.
pub(super) type MetricsServer = (metrics::Shared, tokio::task::JoinHandle<()>);

/// Reads `--nat-candidates`, opens the capture file and binds the metrics port, before anything
/// is loaded: a bad file, a bad path or a busy port fails fast and cleanly.
pub(super) async fn open_outputs(
    args: &LiveArgs,
) -> Result<(
    Option<CaptureSink>,
    Option<MetricsServer>,
    Option<Candidates>,
)> {
    let candidates = Candidates::load_option(args.nat_candidates.as_deref())?;
    let capture = match &args.pcap_out {
        Some(path) => Some(CaptureSink::create(
            path,
            args.snaplen,
            args.pcap_max_bytes,
        )?),
        None => None,
    };
    let metrics = match &args.metrics_addr {
        Some(addr) => {
            let addr = metrics::parse_addr(addr)?;
            let listener = metrics::bind(addr).await?;
            let shared = metrics::Shared::default();
            let server = tokio::spawn(metrics::serve(listener, shared.clone()));
            eprintln!("checksum-audit: metrics at http://{addr}/metrics");
            Some((shared, server))
        }
        None => None,
    };
    Ok((capture, metrics, candidates))
}

/// What to follow of a Kubernetes cluster: with `--kubeconfig`, or always in agent mode
/// (in-cluster without it); Events only in agent mode.
pub(super) fn cluster_options(
    args: &LiveArgs,
    agent: bool,
) -> Result<Option<crate::kube::Options>> {
    if !agent && args.kubeconfig.is_none() {
        return Ok(None);
    }
    let Some(node) = crate::kube::Options::node_name(args.node_name.as_deref()) else {
        anyhow::bail!(
            "no node name: pass --node-name NAME or set NODE_NAME (the downward API's spec.nodeName)"
        );
    };
    Ok(Some(crate::kube::Options {
        kubeconfig: args.kubeconfig.clone(),
        node,
        events: agent.then_some(args.event_interval),
    }))
}
