//! Following interfaces: which ones to audit (names, glob patterns, all), in which network
//! namespaces, and keeping up as they come and go. One worker thread per namespace joins it
//! (setns), attaches to what matches, then follows rtnetlink link notifications: new matching
//! interfaces are attached at once, vanished ones reported. No polling of the interface list.
//!
//! A worker also notices when the namespace it was given is deleted (`ip netns del`, or the
//! process of `pid:PID` exits): it then reports it and ends, so that the auditor does not keep a
//! deleted namespace, and its interfaces, alive by sitting in it.

use std::{
    collections::HashMap,
    fs::File,
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::fs::MetadataExt,
    },
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use checksum_common::Hook;
use tokio::sync::mpsc::UnboundedSender;

use crate::{
    kernel::attach::{Attachment, SharedKernel, XdpAttachMode, attach},
    net::{
        netlink::{self, LinkEvent, LinkMonitor},
        snmp::SnmpFiles,
    },
};

/// A network namespace to audit in: the current one, or one named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// How the user named it (`NAME`, `PATH` or `pid:PID`); empty for the current namespace.
    pub label: String,
    pub path: Option<PathBuf>,
}

impl Namespace {
    pub fn current() -> Self {
        Self {
            label: String::new(),
            path: None,
        }
    }

    /// `NAME` (under /run/netns), a path, or `pid:PID`.
    pub fn parse(spec: &str) -> Result<Self> {
        let path = Self::path_of(spec)?;
        match File::open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "network namespace '{spec}' not found ({} does not exist); list named ones with `ip netns list`",
                path.display()
            ),
            Err(e) => bail!(
                "cannot open network namespace '{spec}' ({}): {e}",
                path.display()
            ),
        }
        Ok(Self {
            label: spec.to_owned(),
            path: Some(path),
        })
    }

    /// The namespace file `spec` names, without opening it.
    pub fn path_of(spec: &str) -> Result<PathBuf> {
        Ok(if let Some(pid) = spec.strip_prefix("pid:") {
            let pid: u32 = pid
                .parse()
                .with_context(|| format!("--netns {spec}: pid:PID needs a number"))?;
            PathBuf::from(format!("/proc/{pid}/ns/net"))
        } else if spec.contains('/') {
            PathBuf::from(spec)
        } else {
            PathBuf::from(format!("/run/netns/{spec}"))
        })
    }

    /// How an interface in this namespace is shown: `ns/eth0`, or `eth0` in the current one.
    pub fn display(&self, iface: &str) -> String {
        if self.label.is_empty() {
            iface.to_owned()
        } else {
            format!("{}/{iface}", self.label)
        }
    }

    /// Moves the calling thread into this namespace; returns its identity (none for the current
    /// namespace, which cannot be deleted under us).
    fn enter(&self) -> Result<Option<NsIdentity>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let file = File::open(path)
            .with_context(|| format!("opening network namespace {}", path.display()))?;
        let meta = file.metadata()?;
        // SAFETY: a valid namespace fd; CLONE_NEWNET only affects this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "joining network namespace {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(Some((meta.dev(), meta.ino())))
    }

    /// Whether the name we were given still refers to the namespace we joined: after
    /// `ip netns del` /run/netns/NAME is gone, after the process of `pid:PID` exits so is
    /// /proc/PID/ns/net (or it is another namespace, if the pid was reused).
    fn still_named(&self, id: NsIdentity) -> bool {
        self.path
            .as_ref()
            .is_none_or(|path| std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == id))
    }
}

/// A network namespace's identity: the nsfs device and inode of its file.
type NsIdentity = (u64, u64);

/// Which interfaces to audit.
#[derive(Debug, Clone)]
pub struct Selector {
    pub patterns: Vec<String>,
    /// Every interface but loopback (loopback too if a pattern names it).
    pub all: bool,
}

impl Selector {
    pub fn matches(&self, name: &str, loopback: bool) -> bool {
        let named = self.patterns.iter().any(|p| glob_match(p, name));
        named || (self.all && !loopback)
    }

    /// Literal names (no wildcard) must exist when we start; patterns may match later.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.patterns
            .iter()
            .map(String::as_str)
            .filter(|p| !is_pattern(p))
    }
}

/// Whether `iface` is a glob pattern (`*`, `?`, `[...]`) rather than a plain name.
pub fn is_pattern(iface: &str) -> bool {
    iface.contains(['*', '?', '['])
}

/// Shell-style wildcard match with `*`, `?` and `[abc]`/`[a-z]` classes (an unclosed `[` is a
/// literal). Linear in the pattern times the name: on a mismatch only the last `*` seen takes one
/// more character, which is enough when every other element matches exactly one.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        let end = p.iter().position(|&x| x == ']')?;
        let set = &p[1..end];
        let mut i = 0;
        let mut hit = false;
        while i < set.len() {
            if i + 2 < set.len() && set[i + 1] == '-' {
                hit |= set[i] <= c && c <= set[i + 2];
                i += 3;
            } else {
                hit |= set[i] == c;
                i += 1;
            }
        }
        Some((hit, end + 1))
    }
    /// The length of the element at the start of `p` if it matches `c`.
    fn one(p: &[char], c: char) -> Option<usize> {
        match p.first()? {
            '*' => None,
            '?' => Some(1),
            '[' => match class(p, c) {
                Some((hit, used)) => hit.then_some(used),
                None => (c == '[').then_some(1),
            },
            &x => (x == c).then_some(1),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut i, mut j) = (0, 0);
    // After the last `*`: where the pattern resumes, and the name position it resumed at.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if p.get(i) == Some(&'*') {
            i += 1;
            star = Some((i, j));
        } else if let Some(used) = one(&p[i..], n[j]) {
            i += used;
            j += 1;
        } else if let Some((after, from)) = star {
            // Let that `*` take one more character and try again from there.
            (i, j) = (after, from + 1);
            star = Some((after, from + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// What a namespace worker tells the main task.
pub enum Update {
    Attached {
        ns: usize,
        attachment: Box<Attachment>,
    },
    /// An interface went away; its attachments are gone with it.
    Vanished {
        ns: usize,
        ifindex: u32,
        iface: String,
    },
    /// The first scan of a namespace is done (all literal names found and attached).
    Ready {
        ns: usize,
        /// The namespace's cookie (`SO_NETNS_COOKIE`), which the kernel-drop records name; 0
        /// where it cannot be read.
        cookie: u64,
        /// Its checksum error counters, opened from inside it (`None` where /proc says no).
        snmp: Option<SnmpFiles>,
    },
    /// The namespace was deleted: its worker has ended and its attachments must go.
    NamespaceGone { ns: usize },
    /// Something that stops the run (before Ready) or is worth a warning (after).
    Failed {
        ns: usize,
        error: anyhow::Error,
        fatal: bool,
    },
}

pub struct WorkerConfig {
    pub selector: Selector,
    pub hooks: Vec<Hook>,
    pub xdp_mode: XdpAttachMode,
    /// `--show-offload`: send offload-pending events from every interface.
    pub show_offload: bool,
    /// The run's programs, already loaded: workers only attach them.
    pub kernel: SharedKernel,
    /// Several namespaces are audited: sources are keyed by their namespace's cookie too.
    pub netns_by_device: bool,
}

/// How long a worker waits for link events before checking whether to stop.
const POLL: Duration = Duration::from_millis(200);

/// Starts the worker of namespace number `index`.
pub fn spawn_worker(
    index: usize,
    ns: Namespace,
    config: Arc<WorkerConfig>,
    tx: UnboundedSender<Update>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if let Err(error) = worker(index, &ns, &config, &tx, &stop) {
            let _ = tx.send(Update::Failed {
                ns: index,
                error,
                fatal: true,
            });
        }
    })
}

fn worker(
    index: usize,
    ns: &Namespace,
    config: &WorkerConfig,
    tx: &UnboundedSender<Update>,
    stop: &AtomicBool,
) -> Result<()> {
    let identity = ns.enter()?;
    let cookie = netns_cookie();
    let netns = match (&cookie, config.netns_by_device) {
        (_, false) => 0,
        (Ok(cookie), true) => *cookie,
        (Err(e), true) => bail!("reading the network namespace's cookie: {e}"),
    };
    // Subscribe before the first listing so that nothing falls in between.
    let monitor = LinkMonitor::new(POLL).context("subscribing to rtnetlink link events")?;
    // ifindex -> name of what we attached to in this namespace.
    let mut attached: HashMap<u32, String> = HashMap::new();
    for link in netlink::list_links().context("listing interfaces")? {
        if stop.load(Ordering::Relaxed) {
            return Ok(()); // stopped while attaching: the main task detaches what we sent
        }
        consider((index, netns), &link, config, &mut attached, tx, stop, true)?;
    }
    let snmp = SnmpFiles::open_here()
        .map_err(|e| log::warn!("no checksum error counters of this namespace: {e}"))
        .ok();
    let _ = tx.send(Update::Ready {
        ns: index,
        cookie: cookie.unwrap_or(0),
        snmp,
    });
    while !stop.load(Ordering::Relaxed) {
        if identity.is_some_and(|id| !ns.still_named(id)) {
            // Leaving the thread (and closing the monitor socket) lets the kernel free it.
            let _ = tx.send(Update::NamespaceGone { ns: index });
            return Ok(());
        }
        let events = match monitor.next_events() {
            Ok(events) => events,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                // Notifications were lost: rescan so that no interface is missed.
                let links = netlink::list_links().context("rescanning interfaces")?;
                links.into_iter().map(LinkEvent::New).collect()
            }
            Err(e) => return Err(e).context("reading rtnetlink link events"),
        };
        for event in events {
            match event {
                LinkEvent::New(link) => consider(
                    (index, netns),
                    &link,
                    config,
                    &mut attached,
                    tx,
                    stop,
                    false,
                )?,
                LinkEvent::Del(link) => {
                    if let Some(iface) = attached.remove(&link.header.index) {
                        let _ = tx.send(Update::Vanished {
                            ns: index,
                            ifindex: link.header.index,
                            iface,
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// The cookie of the calling thread's network namespace (`SO_NETNS_COOKIE`, Linux >= 5.14): what
/// the programs read from a packet's device when several namespaces are audited.
fn netns_cookie() -> std::io::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: plain socket calls on a descriptor we own and close.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut cookie: u64 = 0;
        let mut len = libc::socklen_t::try_from(size_of::<u64>()).expect("8 bytes");
        if libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(cookie)
    }
}

/// Attaches every hook to `link` if it matches and is not attached yet. At startup an attach
/// error is fatal (the user asked for this interface); later it is a warning and we go on.
fn consider(
    (index, netns): (usize, u64),
    link: &netlink_packet_route::link::LinkMessage,
    config: &WorkerConfig,
    attached: &mut HashMap<u32, String>,
    tx: &UnboundedSender<Update>,
    stop: &AtomicBool,
    startup: bool,
) -> Result<()> {
    let Some(name) = netlink::link_name(link) else {
        return Ok(());
    };
    if attached.contains_key(&link.header.index)
        || !config.selector.matches(name, netlink::is_loopback(link))
    {
        return Ok(());
    }
    let ifindex = link.header.index;
    attached.insert(ifindex, name.to_owned());
    // The programs are loaded already: attaching is a map update and a link per hook.
    for (done, &hook) in config.hooks.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match attach(
            &config.kernel,
            name,
            (netns, ifindex),
            hook,
            config.xdp_mode,
            config.show_offload,
        ) {
            Ok(attachment) => {
                let _ = tx.send(Update::Attached {
                    ns: index,
                    attachment: Box::new(attachment),
                });
            }
            // It went away while we attached (pods come and go): not an error. Its deletion
            // notification follows; it reports the interface if some hook got attached.
            Err(e) if netlink::get_link(ifindex).is_err() => {
                log::info!("{name} disappeared while being attached: {e:#}");
                if done == 0 {
                    attached.remove(&ifindex);
                }
                return Ok(());
            }
            Err(e) if startup => return Err(e),
            Err(error) => {
                let _ = tx.send(Update::Failed {
                    ns: index,
                    error,
                    fatal: false,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("veth*", "veth1"));
        assert!(glob_match("veth*", "veth"));
        assert!(!glob_match("veth*", "eth0"));
        assert!(glob_match("eth?", "eth0"));
        assert!(!glob_match("eth?", "eth10"));
        assert!(glob_match("eth[0-2]", "eth1"));
        assert!(!glob_match("eth[0-2]", "eth3"));
        assert!(glob_match("lxc*_eth[ab]", "lxc123_ethb"));
        assert!(glob_match("eth0", "eth0"));
        assert!(!glob_match("eth0", "eth00"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*a*b", "xaxb"));
        assert!(!glob_match("*a*b", "xaxbx"));
        assert!(glob_match("e*[0-9]?", "eth01"));
        assert!(glob_match("[ab", "[ab"), "an unclosed [ is a literal");
        assert!(glob_match("a[*]", "a*"));
        assert!(!glob_match("a[]", "a"));
    }

    #[test]
    fn globs_take_linear_time() {
        // Found by the cli_specs fuzz target: the recursive matcher retried every `*` at every
        // position, exponential in the number of stars: `*` x 60 then `k[` against a 15-character
        // name did not finish in minutes. This one takes microseconds now.
        let pattern = format!("{}k[", "*".repeat(60));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(glob_match(&pattern, "abcdefghijklmno")));
        let matched = finished
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("glob_match still running after 5 s");
        assert!(!matched);
    }

    #[test]
    fn selection() {
        let all = Selector {
            patterns: vec![],
            all: true,
        };
        assert!(all.matches("eth0", false));
        assert!(!all.matches("lo", true));
        let all_and_lo = Selector {
            patterns: vec!["lo".into()],
            all: true,
        };
        assert!(all_and_lo.matches("lo", true));
        let some = Selector {
            patterns: vec!["veth*".into(), "eth0".into()],
            all: false,
        };
        assert!(some.matches("veth9", false));
        assert!(!some.matches("eth1", false));
        assert_eq!(some.literals().collect::<Vec<_>>(), ["eth0"]);
    }

    #[test]
    fn namespaces() {
        let own = format!("pid:{}", std::process::id());
        assert!(Namespace::parse(&own).is_ok());
        assert!(Namespace::parse("pid:abc").is_err());
        let err = Namespace::parse("definitely-not-a-netns")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ip netns list"), "{err}");
        assert_eq!(
            Namespace::parse(&own).unwrap().display("eth0"),
            format!("{own}/eth0")
        );
        assert_eq!(Namespace::current().display("eth0"), "eth0");
    }
}
