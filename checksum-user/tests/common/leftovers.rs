//! What is attached to an interface and what kernel objects a process holds, to prove that an
//! auditor left nothing behind and touched nothing of anyone else's.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    process::Command,
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::programs::{
    LinkOrder, SchedClassifier,
    tc::{NlOptions, TcAttach, TcAttachType},
};
use checksum_testkit::netns::{NetNs, sh};
use checksum_user::kernel::loader::{LoadOptions, Loaded, NOOP_TC};

/// Everything the kernel reports on one interface's hooks: TCX programs with their ids, the XDP
/// line of `ip -d link`, and the clsact filters of both directions as `tc filter show` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    pub tcx: Vec<String>,
    pub xdp: String,
    pub filters: String,
}

impl Hooks {
    pub fn empty() -> Self {
        Self {
            tcx: Vec::new(),
            xdp: String::new(),
            filters: String::new(),
        }
    }

    /// How many of our audit programs are among them (TCX, XDP or clsact filter).
    pub fn ours(&self) -> usize {
        let ours = |s: &str| s.lines().filter(|l| l.contains("csum_")).count();
        self.tcx.iter().map(|p| ours(p)).sum::<usize>() + ours(&self.xdp) + ours(&self.filters)
    }

    pub fn has_ours(&self) -> bool {
        self.ours() > 0
    }
}

pub fn hooks(ns: &NetNs, iface: &str) -> Hooks {
    let ifindex = ns.ifindex(iface);
    let tcx = ns.run(move || {
        let mut out = Vec::new();
        for (dir, t) in [
            ("ingress", TcAttachType::Ingress),
            ("egress", TcAttachType::Egress),
        ] {
            let (_, progs) = SchedClassifier::query_tcx(ifindex, t).expect("query tcx");
            out.extend(
                progs
                    .iter()
                    .map(|p| format!("{dir}:{}#{}", p.name_as_str().unwrap_or("?"), p.id())),
            );
        }
        out
    });
    let mut filters = String::new();
    for dir in ["ingress", "egress"] {
        let out = Command::new("tc")
            .args(["-n", &ns.name, "filter", "show", "dev", iface, dir])
            .output()
            .expect("tc filter show");
        let text = String::from_utf8_lossy(&out.stdout);
        if !text.trim().is_empty() {
            let _ = write!(filters, "{dir}:\n{text}");
        }
    }
    Hooks {
        tcx,
        xdp: ns.xdp_state(iface),
        filters,
    }
}

/// Program, link and map ids a process holds file descriptors to (from /proc/PID/fdinfo).
#[derive(Debug, Default, Clone)]
pub struct Held {
    pub progs: BTreeSet<u32>,
    pub links: BTreeSet<u32>,
    pub maps: BTreeSet<u32>,
}

pub fn held_by(pid: i32) -> Held {
    let mut held = Held::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return held;
    };
    for entry in dir.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in info.lines() {
            let field = |key: &str| line.strip_prefix(key).and_then(|v| v.trim().parse().ok());
            if let Some(id) = field("prog_id:") {
                held.progs.insert(id);
            } else if let Some(id) = field("link_id:") {
                held.links.insert(id);
            } else if let Some(id) = field("map_id:") {
                held.maps.insert(id);
            }
        }
    }
    held
}

/// Which of `held` still exist in the kernel, as "prog 12", "link 3", "map 40".
pub fn still_loaded(held: &Held) -> Vec<String> {
    let progs: BTreeSet<u32> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect();
    let links: BTreeSet<u32> = aya::programs::loaded_links()
        .filter_map(Result::ok)
        .map(|l| l.id())
        .collect();
    let maps: BTreeSet<u32> = aya::maps::loaded_maps()
        .filter_map(Result::ok)
        .map(|m| m.id())
        .collect();
    let mut left = Vec::new();
    left.extend(
        held.progs
            .intersection(&progs)
            .map(|id| format!("prog {id}")),
    );
    left.extend(
        held.links
            .intersection(&links)
            .map(|id| format!("link {id}")),
    );
    left.extend(held.maps.intersection(&maps).map(|id| format!("map {id}")));
    left
}

/// Polls `check` until it returns no complaint or `timeout` passes; returns the last complaint.
/// The kernel frees a dead process's links and programs shortly after it is reaped, not at once.
pub fn settle(timeout: Duration, mut check: impl FnMut() -> Option<String>) -> Option<String> {
    let start = Instant::now();
    loop {
        let complaint = check()?;
        if start.elapsed() > timeout {
            return Some(complaint);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Another tool's programs on some interfaces of a namespace, attached before the auditor runs:
/// per interface a clsact qdisc with a u32 filter in both directions (added by `tc`), a TCX
/// program at ingress and a `cls_bpf` filter at egress (attached over netlink, the legacy way that
/// outlives its owner), held by a thread of the test until dropped.
pub struct Others {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Others {
    pub fn attach(ns: &NetNs, ifaces: &[&str]) -> Self {
        let mut indexes = Vec::new();
        for iface in ifaces {
            sh(&["tc", "-n", &ns.name, "qdisc", "add", "dev", iface, "clsact"]);
            for dir in ["ingress", "egress"] {
                sh(&[
                    "tc", "-n", &ns.name, "filter", "add", "dev", iface, dir, "prio", "7", "u32",
                    "match", "u32", "0", "0", "flowid", "1:1",
                ]);
            }
            indexes.push(ns.ifindex(iface));
        }
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let thread = ns.spawn(move || {
            let mut held = Vec::new();
            for ifindex in indexes {
                let mut other = Loaded::load(&LoadOptions::default()).expect("load");
                let prog = other.tc(NOOP_TC).unwrap();
                let tcx = TcAttach::Tcx {
                    attach_type: TcAttachType::Ingress,
                    order: LinkOrder::default(),
                };
                prog.attach(ifindex, tcx).expect("attach other TCX");
                let nl = TcAttach::Netlink {
                    parent: TcAttachType::Egress.into(),
                    options: NlOptions::default(),
                };
                prog.attach(ifindex, nl).expect("attach other cls_bpf");
                held.push(other);
            }
            ready_tx.send(()).unwrap();
            let _ = stop_rx.recv();
            drop(held);
        });
        ready_rx.recv().expect("other programs attached");
        Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Others {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
