//! Attaching the run's audit program of a hook to one interface, and detaching it again. The
//! programs are loaded once per run (`loader::Loaded`); every attachment uses the same program and
//! adds its interface and hook as a source to the shared `SOURCES` map first, which is where the
//! programs find its settings and count its packets. Attachments are BPF links (XDP links, TCX links) owned by our file descriptors: they
//! never displace another program, and the kernel removes them when the process exits however it
//! exits, SIGKILL included. Only kernels without TCX (< 6.6) get a clsact filter, a netlink object
//! that a SIGKILL would leave behind; XDP is never attached through netlink.

use std::{
    ffi::CString,
    sync::{Arc, Mutex, MutexGuard},
};

use anyhow::{Context as _, Result};
use aya::programs::{
    LinkOrder, ProgramError, XdpMode,
    links::{FdLink, LinkError},
    tc::{self, NlOptions, SchedClassifierLink, TcAttach, TcAttachType, TcError},
};
use checksum_common::{Counters, Hook, SourceKey, source::SOURCE_REPORT_OFFLOAD};

use crate::{
    kernel::loader::{AUDIT_TC_EGRESS, AUDIT_TC_INGRESS, AUDIT_XDP, Loaded},
    kernel::xdp_slot::{XdpHolder, xdp_holder},
    net::iface::IfaceClass,
};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(
        "unknown interface '{0}': no such device in this network namespace (list them with `ip link`)"
    )]
    UnknownInterface(String),
    #[error(
        "the XDP slot of {iface} is taken by {holder}; checksum-audit never replaces another program. \
         Use --hook tc-ingress (TCX links share the hook), or audit another interface"
    )]
    SlotTaken { iface: String, holder: XdpHolder },
    #[error("{iface}: the driver refused native XDP ({reason}); use --xdp-mode auto or generic")]
    NativeRefused { iface: String, reason: String },
    #[error("{iface}: attaching at {hook} failed: {reason}")]
    Other {
        iface: String,
        hook: &'static str,
        reason: String,
    },
}

/// How to attach at XDP (`--xdp-mode`): the kernel layer's own type, so that it does not depend
/// on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// Native (driver) XDP, falling back to generic where the driver refuses.
    Auto,
    Native,
    Generic,
}

/// How a program is held on its hook. Dropping it detaches the program.
#[expect(dead_code, reason = "held only for what its Drop does: detach")]
enum Link {
    /// A BPF link (XDP or TCX): closing its fd detaches, so the kernel cleans up after any exit.
    Bpf(FdLink),
    /// A clsact filter (no TCX): detached over netlink by its Drop, never by the kernel.
    Clsact(SchedClassifierLink),
}

/// The run's loaded object, shared by the threads that attach (one per namespace) and the task
/// that reads counters. Attaching holds the lock only for a map update and a link creation.
pub type SharedKernel = Arc<Mutex<Loaded>>;

/// Locks the kernel object; a thread that panicked while holding it left nothing half-done that
/// matters here (map updates and link creations are single syscalls), so poisoning is ignored.
pub fn lock(kernel: &SharedKernel) -> MutexGuard<'_, Loaded> {
    kernel
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The audit program attached to one interface at one hook. Dropping it detaches the program.
pub struct Attachment {
    pub iface: String,
    pub ifindex: u32,
    pub hook: Hook,
    /// Where the programs find it.
    pub key: SourceKey,
    /// Its slot in the programs' `STATES` map, which its events carry.
    pub slot: u32,
    /// How it is attached: "native"/"generic" (XDP), "tcx" or "clsact" (TC).
    pub mode: &'static str,
    pub class: IfaceClass,
    kernel: SharedKernel,
    link: Option<Link>,
    /// Its counters once detached (its source is then gone from the map).
    last: Option<Counters>,
}

impl Attachment {
    /// Detaches the program, then takes the source out of the map (so that the map holds only
    /// what is attached) and returns its final counters.
    pub fn detach(&mut self) -> Counters {
        // Closing a link's fd detaches it; a clsact filter is removed by SchedClassifierLink's Drop.
        drop(self.link.take());
        *self
            .last
            .get_or_insert_with(|| lock(&self.kernel).remove_source(&self.key))
    }

    pub fn counters(&self) -> Counters {
        self.last
            .unwrap_or_else(|| lock(&self.kernel).source_counters(&self.key))
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.detach();
    }
}

pub fn ifindex_of(iface: &str) -> Result<u32, AttachError> {
    let name = CString::new(iface).map_err(|_| AttachError::UnknownInterface(iface.into()))?;
    // SAFETY: a valid NUL-terminated C string for the duration of the call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(AttachError::UnknownInterface(iface.into())),
        i => Ok(i),
    }
}

fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    }
}

fn is_busy(e: &ProgramError) -> bool {
    matches!(errno(e), Some(libc::EBUSY | libc::EEXIST))
}

/// Attaches the audit program of `hook` to `iface`, interface number `ifindex` (in the calling
/// thread's network namespace, whose key is `netns`; by index, so that an interface deleted and
/// re-created under the same name is never mistaken for the one we were told about), an interface
/// of `class`. With `report_offload` offload-pending mismatches are sent as events; without, they
/// are only counted (the caller decides: `analysis::severity::reports_offload_pending`).
pub fn attach(
    kernel: &SharedKernel,
    iface: &str,
    (netns, ifindex): (u64, u32),
    hook: Hook,
    xdp_mode: XdpAttachMode,
    (class, report_offload): (IfaceClass, bool),
) -> Result<Attachment> {
    if hook == Hook::Xdp
        && let Some(holder) =
            xdp_holder(ifindex).with_context(|| format!("{iface}: reading its XDP state"))?
    {
        return Err(AttachError::SlotTaken {
            iface: iface.into(),
            holder,
        }
        .into());
    }
    let key = SourceKey::new(netns, ifindex, hook);
    let mut loaded = lock(kernel);
    let slot = loaded
        .add_source(
            key,
            if report_offload {
                SOURCE_REPORT_OFFLOAD
            } else {
                0
            },
        )
        .with_context(|| format!("{iface}: adding it to the programs' source map"))?;
    let attached = match hook {
        Hook::Xdp => attach_xdp(&mut loaded, iface, ifindex, xdp_mode),
        Hook::TcIngress => attach_tc(
            &mut loaded,
            iface,
            ifindex,
            TcAttachType::Ingress,
            AUDIT_TC_INGRESS,
        ),
        Hook::TcEgress => attach_tc(
            &mut loaded,
            iface,
            ifindex,
            TcAttachType::Egress,
            AUDIT_TC_EGRESS,
        ),
    };
    let (mode, link) = match attached {
        Ok(attached) => attached,
        Err(e) => {
            loaded.remove_source(&key);
            return Err(e);
        }
    };
    drop(loaded);
    Ok(Attachment {
        iface: iface.into(),
        ifindex,
        hook,
        key,
        slot,
        mode,
        class,
        kernel: kernel.clone(),
        link: Some(link),
        last: None,
    })
}

fn attach_xdp(
    loaded: &mut Loaded,
    iface: &str,
    ifindex: u32,
    mode: XdpAttachMode,
) -> Result<(&'static str, Link)> {
    let prog = loaded.xdp(AUDIT_XDP)?;
    let attempts: &[(XdpMode, &'static str)] = match mode {
        XdpAttachMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
        XdpAttachMode::Native => &[(XdpMode::Driver, "native")],
        XdpAttachMode::Generic => &[(XdpMode::Skb, "generic")],
    };
    let mut refused: Option<String> = None;
    for &(xdp_mode, name) in attempts {
        match prog.attach(ifindex, xdp_mode) {
            Ok(id) => {
                let link = owned_bpf_link(prog.take_link(id)?, iface, "xdp")?;
                if let Some(reason) = refused {
                    eprintln!(
                        "checksum-audit: {iface}: native XDP refused ({reason}); using generic mode"
                    );
                }
                return Ok((name, link));
            }
            Err(e) if is_busy(&e) => {
                // Someone attached between our check and our attach.
                let holder = xdp_holder(ifindex).ok().flatten().unwrap_or(XdpHolder {
                    prog_id: 0,
                    name: None,
                });
                return Err(AttachError::SlotTaken {
                    iface: iface.into(),
                    holder,
                }
                .into());
            }
            Err(e) => refused = Some(format!("{e:#}")),
        }
    }
    let reason = refused.unwrap_or_default();
    Err(match mode {
        XdpAttachMode::Native => AttachError::NativeRefused {
            iface: iface.into(),
            reason,
        },
        _ => AttachError::Other {
            iface: iface.into(),
            hook: "xdp",
            reason,
        },
    }
    .into())
}

/// TCX first (kernel >= 6.6: multi-program, link-based); a clsact qdisc filter through netlink on
/// older kernels.
fn attach_tc(
    loaded: &mut Loaded,
    iface: &str,
    ifindex: u32,
    attach_type: TcAttachType,
    program: &'static str,
) -> Result<(&'static str, Link)> {
    let hook = if attach_type == TcAttachType::Ingress {
        "tc-ingress"
    } else {
        "tc-egress"
    };
    let prog = loaded.tc(program)?;
    let tcx = prog.attach(
        ifindex,
        TcAttach::Tcx {
            attach_type,
            order: LinkOrder::default(),
        },
    );
    let tcx_err = match tcx {
        Ok(id) => return Ok(("tcx", owned_bpf_link(prog.take_link(id)?, iface, hook)?)),
        Err(e) => e,
    };
    if !matches!(errno(&tcx_err), Some(libc::EINVAL | libc::EOPNOTSUPP)) {
        return Err(AttachError::Other {
            iface: iface.into(),
            hook,
            reason: format!("{tcx_err:#}"),
        }
        .into());
    }
    log::info!("{iface}: TCX unavailable ({tcx_err}); attaching a clsact filter instead");
    // Another tool's clsact, or the one our other direction added: EEXIST is fine (the kernel
    // says "Exclusivity flag on, cannot modify", not "exists").
    if let Err(e) = tc::qdisc_add_clsact(ifindex)
        && !matches!(&e, TcError::NetlinkError(n) if n.raw_os_error() == Some(libc::EEXIST))
    {
        return Err(AttachError::Other {
            iface: iface.into(),
            hook,
            reason: format!("adding clsact: {e}"),
        }
        .into());
    }
    let id = prog
        .attach(
            ifindex,
            TcAttach::Netlink {
                parent: attach_type.into(),
                options: NlOptions::default(),
            },
        )
        .map_err(|e| AttachError::Other {
            iface: iface.into(),
            hook,
            reason: format!("{e:#}"),
        })?;
    Ok(("clsact", Link::Clsact(prog.take_link(id)?)))
}

/// Takes a just-made attachment out of aya's bookkeeping as the BPF link it must be. aya falls
/// back to netlink for XDP where link creation fails with EINVAL; such an attachment would outlive
/// a SIGKILL, so it is detached again (by the conversion) and refused. Kernels that load our
/// programs (>= 5.10) all have XDP links (>= 5.9), so this only guards the promise.
fn owned_bpf_link<L>(link: L, iface: &str, hook: &'static str) -> Result<Link, AttachError>
where
    FdLink: TryFrom<L, Error = LinkError>,
{
    FdLink::try_from(link)
        .map(Link::Bpf)
        .map_err(|e| AttachError::Other {
            iface: iface.into(),
            hook,
            reason: format!(
                "the kernel attached it without a BPF link ({e}), which would outlive a crash; refused"
            ),
        })
}
