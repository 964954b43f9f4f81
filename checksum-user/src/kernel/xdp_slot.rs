//! Who holds an interface's XDP slot, read from rtnetlink (`IFLA_XDP`). checksum-audit checks this
//! before attaching so that it can name the holder instead of failing with a bare EBUSY.

use std::io;

use netlink_packet_route::link::{LinkAttribute, LinkXdp};

/// The program attached at an interface's XDP hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpHolder {
    pub prog_id: u32,
    /// Kernel program name (at most 15 characters), when it could be read.
    pub name: Option<String>,
}

impl std::fmt::Display for XdpHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "program '{name}' (id {})", self.prog_id),
            None => write!(f, "program id {}", self.prog_id),
        }
    }
}

/// Returns the program attached to `ifindex`'s XDP hook, if any.
pub fn xdp_holder(ifindex: u32) -> io::Result<Option<XdpHolder>> {
    let Some(prog_id) = xdp_prog_id(ifindex)? else {
        return Ok(None);
    };
    Ok(Some(XdpHolder {
        prog_id,
        name: program_name(prog_id),
    }))
}

fn program_name(prog_id: u32) -> Option<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == prog_id)
        .and_then(|p| p.name_as_str().map(str::to_owned))
}

fn xdp_prog_id(ifindex: u32) -> io::Result<Option<u32>> {
    let link = crate::sys::netlink::get_link(ifindex)?;
    Ok(link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
            LinkXdp::ProgId(id) if *id != 0 => Some(*id),
            _ => None,
        }),
        _ => None,
    }))
}
