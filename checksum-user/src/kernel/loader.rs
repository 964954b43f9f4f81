//! Loads the kernel programs once per run, and keeps the map of their sources: the interfaces
//! and hooks they are attached to, with each one's settings and counters.

use std::path::Path;

use crate::{
    kernel::{
        btf::{Btf, DropConfig, NetnsOffsets, SkbLayout, kernel_btf_path},
        object::Object,
        refusal,
    },
    model::{SkbStateUse, effective_snaplen},
    sys::privileges,
};
use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuValues, RingBuf},
    programs::{Program, ProgramError, SchedClassifier, Xdp},
    util::nr_cpus,
};
use checksum_common::{
    Counters, Hook, SourceKey, SourceState,
    drop::{DROPS_LOST, DROPS_SEEN, MAX_DROP_REASONS, NO_REASON},
    encap::{DEFAULT_TUNNEL_PORTS, MAX_TUNNEL_PORTS},
    event::CAPTURE_HEADER_LEN,
    source::{DIRECT_IFINDEXES, EVENT_BUDGET_FLOWS, MAX_SOURCES, UNATTRIBUTED_SLOT},
    track::{DEFAULT_TRACK_TTL_NS, TrackKey, Tracked},
};

/// Program names in the object (the kernel keeps 15 characters).
pub const AUDIT_XDP: &str = "csum_audit_xdp";
pub const NOOP_XDP: &str = "noop_xdp";
/// Benchmarks' floor: sums a frame's L4 bytes as the audit does, without parsing.
pub const SUM_FLOOR_XDP: &str = "sum_floor_xdp";
pub const AUDIT_TC_INGRESS: &str = "csum_tc_ingress";
pub const AUDIT_TC_EGRESS: &str = "csum_tc_egress";
pub const NOOP_TC: &str = "noop_tc";
pub const EVENTS_MAP: &str = "EVENTS";
const DROPS_MAP: &str = "DROPS";
const DROP_COUNTS_MAP: &str = "DROP_COUNTS";
const TRACKED_MAP: &str = "TRACKED";
const TRACK_ACTIVE_MAP: &str = "TRACK_ACTIVE";
/// The per-flow event budget's LRU table (`EVENT_BUDGET_FLOWS` entries of about 100 bytes when
/// `events_per_flow` is on; off, it shrinks to one entry).
const EVENT_BUDGET_MAP: &str = "EVENT_BUDGET";
const SOURCES_MAP: &str = "SOURCES";
const STATES_MAP: &str = "STATES";
const SLOTS_BY_IFINDEX_MAP: &str = "SLOTS_BY_IFINDEX";

pub use checksum_common::source::DEFAULT_RING_BYTES;

#[derive(Debug, Clone)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent switches, each a frozen global of the programs"
)]
pub struct LoadOptions {
    /// Report every verdict, not only mismatches (`replay --all`).
    pub report_all: bool,
    /// Ring buffer size in bytes: a power of two and a multiple of the page size.
    pub ring_bytes: u32,
    /// Enable aya-log messages from the kernel side.
    pub kernel_log: bool,
    /// Send events for offload-pending mismatches from the test-run sources (`FrameAuditor`;
    /// attachments decide this per interface, see `attach::attach`).
    pub report_offload: bool,
    /// Frame bytes each mismatch event carries (`--snaplen` with `--pcap-out`); 0 turns capture
    /// off. Larger values are clamped to `MAX_SNAP` (see [`effective_snaplen`]). Only mismatches
    /// (status `bad`) carry bytes; each record costs [`capture_record_bytes`] of the ring buffer.
    pub snaplen: u32,
    /// Events per flow and mismatch kind (`--events-per-flow`); 0 sends one for every mismatch.
    /// The rest are counted in `events_sampled_out`.
    pub events_per_flow: u32,
    /// Set when several network namespaces are audited: the programs then read each packet's
    /// namespace from its device, at offsets resolved from BTF (see checksum-ebpf/src/netns.rs);
    /// a kernel without them is an error.
    pub netns_by_device: bool,
    /// Resolve what the kernel-drop program filters on and reads, for `drops::attach`; a kernel
    /// without it is not an error: [`Loaded::drop_config`] says why.
    pub kernel_drops: bool,
    /// Read each packet's skb checksum state at TC (`ip_summed`, `csum_start`/`csum_offset`, ...)
    /// into its events, at offsets resolved from the running kernel's BTF
    /// (checksum-ebpf/src/skb.rs). On by default; a kernel whose layout cannot be resolved gets
    /// a warning and "unknown" state. One helper call, made only for a field that holds the
    /// pseudo-header sum and for a verdict that becomes an event.
    pub skb_state: bool,
    /// Settle TCP/UDP fields the skb says are `CHECKSUM_PARTIAL` at exactly that field, and that
    /// hold the pseudo-header sum, in O(1) as `partial-ok` instead of summing them into an
    /// offload-pending mismatch; the offload-pending mismatches left at TC are then fields nothing
    /// will complete, and are sent from every source. Needs `skb_state`. On by default.
    pub partial_ok: bool,
    /// Track broken flows (`checksum_common::track`): reports each tracked half allows, 0 for
    /// none (the code is then pruned). Off by default; live auditing turns it on, replay (one
    /// hook, every verdict already) has no use for it.
    pub track_reports: u32,
    pub track_ttl: std::time::Duration,
    /// UDP ports audited as tunnels, inner packet included (`cli::TunnelArgs::table`).
    pub tunnel_ports: [u32; MAX_TUNNEL_PORTS],
    /// Which build of the programs to load; `None` takes the one the running kernel can verify
    /// (`Object::for_running_kernel`). The tests load both on the host.
    pub object: Option<Object>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            report_all: false,
            ring_bytes: DEFAULT_RING_BYTES,
            kernel_log: false,
            report_offload: false,
            snaplen: 0,
            events_per_flow: 0,
            netns_by_device: false,
            kernel_drops: false,
            skb_state: true,
            partial_ok: true,
            track_reports: 0,
            track_ttl: std::time::Duration::from_nanos(DEFAULT_TRACK_TTL_NS),
            tunnel_ports: DEFAULT_TUNNEL_PORTS,
            object: None,
        }
    }
}

/// Ring-buffer bytes one capture record takes at most with `snaplen`: the kernel's 8-byte record
/// header, the 144-byte capture header and the frame bytes, rounded up to 8. Size
/// `LoadOptions::ring_bytes` from it when capturing (a plain event takes 136).
#[expect(clippy::cast_possible_truncation, reason = "CAPTURE_HEADER_LEN is 144")]
pub const fn capture_record_bytes(snaplen: u32) -> u32 {
    let len = 8 + CAPTURE_HEADER_LEN as u32 + effective_snaplen(snaplen);
    len.div_ceil(8) * 8
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Named before asking the kernel: "`CAP_BPF`", "`CAP_BPF` and `CAP_PERFMON`", ...
    #[error(
        "missing privileges: {0} not in the effective capability set; checksum-audit needs CAP_BPF, \
         CAP_NET_ADMIN and CAP_PERFMON: run as root or grant them, e.g. `sudo setcap cap_bpf,cap_net_admin,cap_perfmon+ep checksum-audit`"
    )]
    MissingCapabilities(String),
    /// The capabilities are there but the kernel still said EPERM (a user namespace, an LSM).
    #[error(
        "missing privileges: the kernel refused to load eBPF programs (permission denied) although \
         CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON are effective: they must be held in the initial user \
         namespace, and no LSM policy (SELinux, AppArmor) may deny bpf()"
    )]
    MissingPrivileges,
    #[error("this kernel has no BPF ring buffer (needs Linux >= 5.8 with CONFIG_BPF_SYSCALL): {0}")]
    NoRingBuffer(String),
    #[error(
        "this kernel exposes no BTF ({0} is missing); checksum-audit needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf(String),
    #[error("--ring-buffer-size {0}: must be a power of two and at least 4096 bytes")]
    BadRingSize(u32),
    /// The kernel refused to load `program`, in one line (see `refusal::describe`): `decisive`
    /// is the verifier's line that says why (`None` when its log is empty), `log` the whole log,
    /// which was logged at debug level (-v) when the refusal was classified.
    #[error("{}", refusal::describe(program, kernel, io_error, decisive.as_deref()))]
    Verifier {
        program: String,
        /// `uname -sr`: "Linux 6.1.0-50-amd64".
        kernel: String,
        io_error: std::io::Error,
        decisive: Option<String>,
        log: String,
    },
    #[error("loading the eBPF object failed: {0}")]
    Other(String),
    /// A layout the run cannot do without is missing from the kernel's BTF (its own words).
    #[error(transparent)]
    Btf(#[from] LayoutError),
}

/// Why a layout the programs need could not be had from the kernel's BTF, in one line. Cloned:
/// one unreadable BTF is the reason for every layout asked of it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LayoutError {
    /// The kernel's BTF could not be read or parsed.
    #[error("{0}")]
    Btf(String),
    /// The BTF was read, but lacks a type, a field or a shape the layout needs.
    #[error("{0}")]
    Resolve(String),
}

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// Checks the effective capability set before touching the kernel, so that the error names what is
/// missing rather than surfacing a bare EPERM from some syscall.
pub fn check_privileges() -> Result<(), LoadError> {
    let Some(effective) = privileges::effective() else {
        return Ok(()); // Cannot tell; let the kernel decide.
    };
    match privileges::missing_for_bpf(effective).as_slice() {
        [] => Ok(()),
        [one] => Err(LoadError::MissingCapabilities(format!("{} is", one.name()))),
        many => Err(LoadError::MissingCapabilities(format!(
            "{} are",
            privileges::names(many)
        ))),
    }
}

/// Checks the kernel features the program needs.
pub fn check_kernel() -> Result<(), LoadError> {
    if !Path::new(BTF_PATH).exists() {
        return Err(LoadError::NoBtf(BTF_PATH.into()));
    }
    Ok(())
}

/// The loaded object: every program and map of one run. Every interface and hook is attached to
/// the same programs; each is a source in the `SOURCES` map, added before its program is attached
/// and removed after it is detached.
pub struct Loaded {
    pub ebpf: Ebpf,
    /// The `STATES` slot of each source added.
    slots: std::collections::HashMap<SourceKey, u32>,
    /// Slots free for the next source, oldest freed first: events name their source by slot, and
    /// those of a detached source may still be in the ring buffer, so a slot is reused only after
    /// every other free one (slot 0 is the unattributed one's, never handed out).
    free: std::collections::VecDeque<u32>,
    /// One namespace is audited: small ifindexes find their slot in `SLOTS_BY_IFINDEX` too.
    direct: bool,
    /// Whether the TC programs read the skb's checksum state and settle partial checksums with
    /// it, or why not.
    skb_state: SkbStateUse,
    /// See [`Loaded::drop_config`].
    drop_config: Option<Result<DropConfig, LayoutError>>,
    /// The build of the programs loaded.
    object: Object,
}

impl Loaded {
    pub fn load(opts: &LoadOptions) -> Result<Self, LoadError> {
        check_privileges()?;
        check_kernel()?;
        if !opts.ring_bytes.is_power_of_two() || opts.ring_bytes < 4096 {
            return Err(LoadError::BadRingSize(opts.ring_bytes));
        }
        let report_all = u8::from(opts.report_all);
        let snaplen = effective_snaplen(opts.snaplen);
        let Layouts {
            netns: netns_offsets,
            drops: drop_config,
            skb,
            skb_use,
        } = layouts(opts)?;
        // The device-to-namespace offsets serve both the audit programs (several namespaces) and
        // the drop program (always).
        let drops = drop_config.as_ref().and_then(|c| c.as_ref().ok());
        let netns = netns_offsets.or(drops.map(|d| d.netns)).unwrap_or_default();
        let netns_by_device = u8::from(opts.netns_by_device);
        let drops = drops.cloned().unwrap_or(DropConfig {
            netns,
            ..DropConfig::default()
        });
        let mut reasons = [NO_REASON; MAX_DROP_REASONS];
        for (slot, (value, _)) in reasons.iter_mut().zip(&drops.reasons) {
            *slot = *value;
        }
        let skb_state = u8::from(skb.is_some());
        let partial_ok = u8::from(skb.is_some() && opts.partial_ok);
        let skb = skb.unwrap_or_default();
        let skb_bits = [
            skb.ip_summed.encoded(),
            skb.csum_level.encoded(),
            skb.encapsulation.encoded(),
        ];
        let track_ttl_ns = u64::try_from(opts.track_ttl.as_nanos()).unwrap_or(u64::MAX);
        // aya-log levels: 0 is off; Debug is 4.
        let log_level: u8 = if opts.kernel_log { 5 } else { 0 };
        let mut loader = EbpfLoader::new();
        loader
            .override_global("REPORT_ALL", &report_all, true)
            .override_global("CAPTURE_SNAPLEN", &snaplen, true)
            .override_global("EVENTS_PER_FLOW", &opts.events_per_flow, true)
            .override_global("NETNS_BY_DEVICE", &netns_by_device, true)
            .override_global("OFF_SKB_DEV", &netns.skb_dev, true)
            .override_global("OFF_XDP_RXQ", &netns.xdp_rxq, true)
            .override_global("OFF_RXQ_DEV", &netns.rxq_dev, true)
            .override_global("OFF_DEV_NET", &netns.dev_net, true)
            .override_global("OFF_NET_COOKIE", &netns.net_cookie, true)
            .override_global("DROP_REASONS", &reasons, true)
            .override_global("OFF_SKB_HEAD", &drops.skb_head, true)
            .override_global("OFF_SKB_NETWORK_HEADER", &drops.skb_network_header, true)
            .override_global(
                "OFF_SKB_TRANSPORT_HEADER",
                &drops.skb_transport_header,
                true,
            )
            .override_global("OFF_SKB_PROTOCOL", &drops.skb_protocol, true)
            .override_global("OFF_DEV_IFINDEX", &drops.dev_ifindex, true)
            .override_global("OFF_SKB_IIF", &drops.skb_iif, true)
            .override_global("OFF_SKB_SK", &drops.skb_sk, true)
            .override_global("OFF_SOCK_NET", &drops.sock_net, true)
            .override_global("OFF_TASK_NSPROXY", &drops.task_nsproxy, true)
            .override_global("OFF_NSPROXY_NET", &drops.nsproxy_net, true)
            .override_global("SKB_STATE", &skb_state, true)
            .override_global("PARTIAL_OK", &partial_ok, true)
            .override_global("TRACK_REPORTS", &opts.track_reports, true)
            .override_global("TUNNEL_PORTS", &opts.tunnel_ports, true)
            .override_global("TRACK_TTL_NS", &track_ttl_ns, true)
            .override_global("OFF_SKB_WINDOW", &skb.window, true)
            .override_global("SKB_CSUM", &skb.csum, true)
            .override_global("SKB_NETWORK_HEADER", &skb.network_header, true)
            .override_global("SKB_IP_SUMMED", &skb_bits[0], true)
            .override_global("SKB_CSUM_LEVEL", &skb_bits[1], true)
            .override_global("SKB_ENCAP", &skb_bits[2], true)
            .override_global(aya_log::LEVEL, &log_level, true)
            .map_max_entries(EVENTS_MAP, opts.ring_bytes)
            .map_max_entries(
                EVENT_BUDGET_MAP,
                if opts.events_per_flow == 0 {
                    1
                } else {
                    EVENT_BUDGET_FLOWS
                },
            );
        let object = object_for(opts);
        let ebpf = loader
            .load(object.bytes())
            .map_err(|e| classify_load_error(&e))?;
        Ok(Self {
            ebpf,
            slots: std::collections::HashMap::new(),
            free: (UNATTRIBUTED_SLOT + 1..MAX_SOURCES).collect(),
            direct: !opts.netns_by_device,
            skb_state: skb_use,
            drop_config,
            object,
        })
    }

    /// The build of the programs this run loaded.
    pub fn object(&self) -> Object {
        self.object
    }

    /// What the kernel-drop program needs of this kernel, or why it cannot run here (one line);
    /// `None` when not asked for (`LoadOptions::kernel_drops`).
    pub fn drop_config(&self) -> Option<&Result<DropConfig, LayoutError>> {
        self.drop_config.as_ref()
    }

    /// Whether severity at TC can follow the skb's checksum state this run.
    pub fn skb_state(&self) -> &SkbStateUse {
        &self.skb_state
    }

    /// Loads (verifies) the audit programs of `hooks` now, each in its own thread: verifying is
    /// CPU-bound and happens once per run, so a run is ready in the time of the slowest program.
    pub fn load_audit_programs(&mut self, hooks: &[Hook]) -> Result<(), LoadError> {
        let wanted: Vec<&str> = hooks.iter().map(|&h| audit_program(h)).collect();
        let programs: Vec<(&str, &mut Program)> = self
            .ebpf
            .programs_mut()
            .filter(|(name, _)| wanted.contains(name))
            .collect();
        std::thread::scope(|scope| {
            let loading: Vec<_> = programs
                .into_iter()
                .map(|(name, prog)| {
                    scope.spawn(move || match prog {
                        Program::Xdp(p) => ensure_loaded(name, p),
                        Program::SchedClassifier(p) => ensure_loaded(name, p),
                        _ => Ok(()),
                    })
                })
                .collect();
            loading
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(LoadError::Other("loading panicked".into())))
                })
                .collect::<Result<Vec<()>, LoadError>>()
        })?;
        Ok(())
    }

    fn program(&mut self, name: &str) -> Result<&mut Program, LoadError> {
        self.ebpf
            .program_mut(name)
            .ok_or_else(|| LoadError::Other(format!("program {name} missing from the object")))
    }

    /// An XDP program, loaded (and verified) on first use.
    pub fn xdp(&mut self, name: &str) -> Result<&mut Xdp, LoadError> {
        self.loaded_program(name)
    }

    /// A TC classifier program, loaded (and verified) on first use.
    pub fn tc(&mut self, name: &str) -> Result<&mut SchedClassifier, LoadError> {
        self.loaded_program(name)
    }

    fn loaded_program<'p, P>(&'p mut self, name: &str) -> Result<&'p mut P, LoadError>
    where
        P: LazyLoad,
        &'p mut P: TryFrom<&'p mut Program, Error = ProgramError>,
    {
        let prog: &mut P = self
            .program(name)?
            .try_into()
            .map_err(|e: ProgramError| LoadError::Other(e.to_string()))?;
        ensure_loaded(name, prog)?;
        Ok(prog)
    }

    /// Takes the events ring buffer out of the object (it can be taken once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(EVENTS_MAP)
            .ok_or_else(|| LoadError::Other("EVENTS map already taken".into()))?;
        RingBuf::try_from(map).map_err(|e| LoadError::Other(e.to_string()))
    }

    /// Takes the kernel-drop ring buffer out of the object (it can be taken once).
    pub fn take_drops(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(DROPS_MAP)
            .ok_or_else(|| LoadError::Other("DROPS map already taken".into()))?;
        RingBuf::try_from(map).map_err(|e| LoadError::Other(e.to_string()))
    }

    /// Checksum drops the drop program saw, and those of them it found no ring room for.
    pub fn drop_counts(&mut self) -> (u64, u64) {
        let sum = |this: &mut Self, index: u32| -> u64 {
            this.map_mut(DROP_COUNTS_MAP)
                .ok()
                .and_then(|m| PerCpuArray::<&mut MapData, u64>::try_from(m).ok())
                .and_then(|a| a.get(&index, 0).ok())
                .map_or(0, |values| values.iter().sum())
        };
        (sum(self, DROPS_SEEN), sum(self, DROPS_LOST))
    }

    /// Removes the tracked halves that have expired (`checksum_common::track`) and, when none is
    /// left, tells the programs to stop looking (`TRACK_ACTIVE`). Returns how many were removed,
    /// and how many are left.
    pub fn sweep_tracked(&mut self) -> (u64, u64) {
        let now = crate::sys::clock::monotonic_ns();
        let Ok(mut tracked) = self.tracked() else {
            return (0, 0);
        };
        let entries: Vec<(TrackKey, Tracked)> = tracked.iter().filter_map(Result::ok).collect();
        let mut removed = 0;
        for (key, value) in &entries {
            if value.expires_ns <= now && tracked.remove(key).is_ok() {
                removed += 1;
            }
        }
        let left = entries.len() as u64 - removed;
        if left == 0 {
            self.set_track_active(false);
            // A program tracked a half between the iteration and the store: look again.
            if self.tracked().is_ok_and(|t| t.keys().next().is_some()) {
                self.set_track_active(true);
            }
        }
        (removed, left)
    }

    fn tracked(&mut self) -> Result<HashMap<&mut MapData, TrackKey, Tracked>, MapError> {
        HashMap::try_from(self.map_mut(TRACKED_MAP)?)
    }

    /// Tells the programs whether to look anything up in `TRACKED` (`TRACK_ACTIVE`).
    fn set_track_active(&mut self, on: bool) {
        if let Ok(m) = self.map_mut(TRACK_ACTIVE_MAP)
            && let Ok(mut active) = aya::maps::Array::<&mut MapData, u32>::try_from(m)
        {
            let _ = active.set(0, &u32::from(on), 0);
        }
    }

    /// Starts forwarding kernel log records to the `log` crate (shown at -v).
    pub fn start_kernel_log(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        aya_log::EbpfLogger::init(&mut self.ebpf)
            .map_err(|e| log::warn!("kernel log unavailable: {e}"))
            .ok()
    }

    fn states(&mut self) -> Result<PerCpuArray<&mut MapData, SourceState>, MapError> {
        PerCpuArray::try_from(self.map_mut(STATES_MAP)?)
    }

    /// Adds a source with zero counters, replacing any earlier one with the same key. Done before
    /// attaching, so that its first packet is counted as its own: the slot's settings and counters
    /// are written first, then the key that leads the programs there.
    /// Returns the source's slot, which its events carry.
    pub fn add_source(&mut self, key: SourceKey, flags: u32) -> anyhow::Result<u32> {
        if self.slots.contains_key(&key) {
            self.remove_source(&key);
        }
        let slot = self.free.pop_front().ok_or_else(|| {
            anyhow::anyhow!(
                "already auditing {} interface hooks, the most one run can (MAX_SOURCES)",
                MAX_SOURCES - 1
            )
        })?;
        self.slots.insert(key, slot);
        if let Err(e) = self.write_slot(key, slot, flags) {
            // Undo whatever part was written (the slot goes back to the free queue with it).
            self.remove_source(&key);
            return Err(e);
        }
        Ok(slot)
    }

    fn write_slot(&mut self, key: SourceKey, slot: u32, flags: u32) -> anyhow::Result<()> {
        let cpus = nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
        let state = SourceState {
            counters: Counters::default(),
            flags,
            slot,
            ..SourceState::default()
        };
        let values = PerCpuValues::try_from(vec![state; cpus.get() as usize])?;
        self.states()?.set(slot, values, 0)?;
        self.sources()?.insert(&key, &slot, 0)?;
        self.set_direct_slot(&key, UNATTRIBUTED_SLOT, slot)?;
        Ok(())
    }

    fn sources(&mut self) -> Result<HashMap<&mut MapData, SourceKey, u32>, MapError> {
        HashMap::try_from(self.map_mut(SOURCES_MAP)?)
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map, MapError> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| MapError::InvalidName { name: name.into() })
    }

    /// Sets `key`'s entry in `SLOTS_BY_IFINDEX` to `new` if it holds `old` (where the programs
    /// look it up there: one namespace, a small ifindex). Keys with a namespace cookie never are:
    /// in a run of one namespace, those are sources no packet names (`REPLAY_NETNS`).
    fn set_direct_slot(&mut self, key: &SourceKey, old: u32, new: u32) -> anyhow::Result<()> {
        if !self.is_direct(key) {
            return Ok(());
        }
        let mut array = self.direct_slots()?;
        let mut slots = array.get(&key.ifindex, 0)?;
        if slots[key.hook as usize] == old {
            slots[key.hook as usize] = new;
            array.set(key.ifindex, &slots, 0)?;
        }
        Ok(())
    }

    /// Whether the programs find `key`'s slot in `SLOTS_BY_IFINDEX`.
    fn is_direct(&self, key: &SourceKey) -> bool {
        self.direct && key.netns == 0 && key.ifindex < DIRECT_IFINDEXES && key.hook <= 2
    }

    fn direct_slots(&mut self) -> Result<Array<&mut MapData, [u32; 3]>, MapError> {
        Array::try_from(self.map_mut(SLOTS_BY_IFINDEX_MAP)?)
    }

    /// Counts the frames of `device` (a source in `SLOTS_BY_IFINDEX`: one namespace, a small
    /// ifindex) in the slot of `counted_as` from now on, or in its own again when that is
    /// `device` itself. Replay counts each capture interface's frames apart this way, though
    /// all run on the loopback device.
    pub fn count_as(&mut self, device: &SourceKey, counted_as: &SourceKey) -> anyhow::Result<()> {
        let (Some(_), Some(&target)) = (self.slots.get(device), self.slots.get(counted_as)) else {
            anyhow::bail!("count_as: both sources must have been added");
        };
        anyhow::ensure!(
            self.is_direct(device),
            "count_as: the device must be in SLOTS_BY_IFINDEX"
        );
        let mut array = self.direct_slots()?;
        let mut slots = array.get(&device.ifindex, 0)?;
        slots[device.hook as usize] = target;
        array.set(device.ifindex, &slots, 0)?;
        Ok(())
    }

    /// Removes a source (after detaching it) and returns its last counters.
    pub fn remove_source(&mut self, key: &SourceKey) -> Counters {
        let Some(slot) = self.slots.remove(key) else {
            return Counters::default();
        };
        if let Err(e) = self.set_direct_slot(key, slot, UNATTRIBUTED_SLOT) {
            log::warn!("removing slot {slot} of ifindex {}: {e:#}", key.ifindex);
        }
        if let Ok(mut sources) = self.sources() {
            // Absent when adding it failed before this step.
            let _ = sources.remove(key);
        }
        let last = self.slot_counters(slot);
        self.free.push_back(slot);
        last
    }

    /// A source's counters, summed over the CPUs (zero if it was never added or is gone).
    pub fn source_counters(&mut self, key: &SourceKey) -> Counters {
        match self.slots.get(key) {
            Some(&slot) => self.slot_counters(slot),
            None => Counters::default(),
        }
    }

    fn slot_counters(&mut self, slot: u32) -> Counters {
        let mut total = Counters::default();
        if let Ok(states) = self.states()
            && let Ok(values) = states.get(&slot, 0)
        {
            for cpu in values.iter() {
                total.accumulate(&cpu.counters);
            }
        }
        total
    }

    /// Counters of frames whose source was not in the map (`UNATTRIBUTED_SLOT`).
    pub fn unattributed(&mut self) -> Counters {
        self.slot_counters(UNATTRIBUTED_SLOT)
    }

    /// Every source's counters, the unattributed ones included, summed (test runs and replay).
    pub fn counters(&mut self) -> Counters {
        let slots: Vec<u32> = self.slots.values().copied().collect();
        let mut total = self.unattributed();
        for slot in slots {
            total.accumulate(&self.slot_counters(slot));
        }
        total
    }
}

/// The build of the programs `opts` asks for, or the one this kernel can verify.
fn object_for(opts: &LoadOptions) -> Object {
    let object = opts.object.unwrap_or_else(Object::for_running_kernel);
    if object != Object::Current {
        log::info!(
            "this kernel lacks bpf_loop or XDP fragments (Linux < 5.18): loading the {} build of \
             the programs, which audits alike",
            object.name()
        );
    }
    object
}

/// What the programs need of the kernel's structures, as `LoadOptions` asks for them.
struct Layouts {
    netns: Option<NetnsOffsets>,
    drops: Option<Result<DropConfig, LayoutError>>,
    skb: Option<SkbLayout>,
    skb_use: SkbStateUse,
}

/// Resolves the layouts `opts` asks for from the kernel's BTF (several MiB), parsed once, on
/// first use. Only the namespace offsets are required; the others fall back, saying why.
fn layouts(opts: &LoadOptions) -> Result<Layouts, LoadError> {
    let btf = std::cell::OnceCell::new();
    let kernel_btf = || {
        btf.get_or_init(|| {
            Btf::from_file(&kernel_btf_path()).map_err(|e| LayoutError::Btf(format!("{e:#}")))
        })
    };
    let netns = opts
        .netns_by_device
        .then(|| resolved(kernel_btf(), NetnsOffsets::of))
        .transpose()
        .map_err(LoadError::Btf)?;
    let drops = opts
        .kernel_drops
        .then(|| resolved(kernel_btf(), DropConfig::of));
    let (skb, skb_use) = match (opts.skb_state, opts.partial_ok) {
        (false, _) => (None, SkbStateUse::Off),
        (true, partial_ok) => match resolved(kernel_btf(), SkbLayout::of) {
            Ok(layout) if partial_ok => (Some(layout), SkbStateUse::On),
            Ok(layout) => (Some(layout), SkbStateUse::Off),
            Err(why) => (None, SkbStateUse::Unavailable(why.to_string())),
        },
    };
    Ok(Layouts {
        netns,
        drops,
        skb,
        skb_use,
    })
}

/// `of` the kernel's BTF, or why it cannot be had (in one line).
fn resolved<T>(
    btf: &Result<Btf, LayoutError>,
    of: impl FnOnce(&Btf) -> anyhow::Result<T>,
) -> Result<T, LayoutError> {
    of(btf.as_ref().map_err(Clone::clone)?).map_err(|e| LayoutError::Resolve(format!("{e:#}")))
}

/// The audit program of a hook.
pub fn audit_program(hook: Hook) -> &'static str {
    match hook {
        Hook::Xdp => AUDIT_XDP,
        Hook::TcIngress => AUDIT_TC_INGRESS,
        Hook::TcEgress => AUDIT_TC_EGRESS,
    }
}

fn ensure_loaded<P: LazyLoad>(name: &str, prog: &mut P) -> Result<(), LoadError> {
    if !prog.is_loaded() {
        prog.load_now()
            .map_err(|e| classify_program_error(name, &e))?;
    }
    Ok(())
}

/// Program types we load on first use (their `load` takes no arguments).
trait LazyLoad {
    fn is_loaded(&self) -> bool;
    fn load_now(&mut self) -> Result<(), ProgramError>;
}

impl LazyLoad for Xdp {
    fn is_loaded(&self) -> bool {
        self.fd().is_ok()
    }
    fn load_now(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}

impl LazyLoad for SchedClassifier {
    fn is_loaded(&self) -> bool {
        self.fd().is_ok()
    }
    fn load_now(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}

fn is_eperm(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

fn classify_load_error(e: &EbpfError) -> LoadError {
    match e {
        EbpfError::MapError(MapError::CreateError { name, io_error, .. }) => {
            if is_eperm(io_error) {
                LoadError::MissingPrivileges
            } else if name == EVENTS_MAP {
                LoadError::NoRingBuffer(io_error.to_string())
            } else {
                LoadError::Other(format!("{e:#}"))
            }
        }
        _ => LoadError::Other(format!("{e:#}")),
    }
}

fn classify_program_error(name: &str, e: &ProgramError) -> LoadError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            // "prohibited for !root": the verifier's Spectre hardening for loaders without
            // CAP_PERFMON.
            if is_eperm(io_error) && (log.trim().is_empty() || log.contains("!root")) {
                LoadError::MissingPrivileges
            } else {
                refused(name, io_error, log)
            }
        }
        _ => LoadError::Other(format!("{name}: {e}")),
    }
}

/// A refused load as `LoadError::Verifier`. The whole log is logged here, at debug level: the
/// runs load each program once, before use (live: `load_audit_programs`; replay:
/// `FrameAuditor::verify`), and stop at a refusal, so it appears once.
fn refused(program: &str, io_error: &std::io::Error, log: String) -> LoadError {
    refusal::log_full(program, &log);
    LoadError::Verifier {
        program: program.to_owned(),
        kernel: refusal::kernel_release(),
        // io::Error is not Clone; its errno is all a refusal carries.
        io_error: io_error.raw_os_error().map_or_else(
            || std::io::Error::new(io_error.kind(), io_error.to_string()),
            std::io::Error::from_raw_os_error,
        ),
        decisive: refusal::decisive_line(&log),
        log,
    }
}
