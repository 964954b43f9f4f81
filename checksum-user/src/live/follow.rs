//! Following interfaces: attaching to the ones selected (`net::select`) in each network namespace
//! (`net::namespace`), and keeping up as they come and go. One worker thread per namespace joins it
//! (setns), attaches to what matches, then follows rtnetlink link notifications: new matching
//! interfaces are attached at once, vanished ones reported. No polling of the interface list.
//!
//! A worker also notices when the namespace it was given is deleted (`ip netns del`, or the
//! process of `pid:PID` exits): it then reports it and ends, so that the auditor does not keep a
//! deleted namespace, and its interfaces, alive by sitting in it.

use std::{
    collections::HashMap,
    os::fd::{AsRawFd, FromRawFd},
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
    analysis::severity::reports_offload_pending,
    kernel::attach::{Attachment, SharedKernel, XdpAttachMode, attach},
    net::{iface::IfaceClass, namespace::Namespace, select::Selector, snmp::SnmpFiles},
    sys::netlink::{self, LinkEvent, LinkMonitor},
};

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
        let result = netlink::get_link(ifindex)
            .with_context(|| format!("{name}: reading its link over rtnetlink"))
            .and_then(|link| {
                let class = IfaceClass::of(&link);
                let report_offload = reports_offload_pending(hook, &class, config.show_offload);
                attach(
                    &config.kernel,
                    name,
                    (netns, ifindex),
                    hook,
                    config.xdp_mode,
                    (class, report_offload),
                )
            });
        match result {
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
