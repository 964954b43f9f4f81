//! Who holds an interface's XDP slot, read from rtnetlink (IFLA_XDP). checksum-audit checks this
//! before attaching so that it can name the holder instead of failing with a bare EBUSY.

use std::io;

use netlink_packet_core::{
    NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage, LinkXdp},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

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
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut request = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetLink(link)),
    );
    request.finalize();
    let mut buf = vec![0u8; request.buffer_len()];
    request.serialize(&mut buf);

    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.send(&buf, 0)?;
    let (reply, _) = socket.recv_from_full()?;
    let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    match message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
            Ok(link.attributes.iter().find_map(|attr| match attr {
                LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
                    LinkXdp::ProgId(id) if *id != 0 => Some(*id),
                    _ => None,
                }),
                _ => None,
            }))
        }
        NetlinkPayload::Error(e) => Err(e.to_io()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected rtnetlink reply",
        )),
    }
}

// Silence "unused trait" for the deserialize bound on older compilers.
#[allow(dead_code)]
fn _assert_traits<T: NetlinkSerializable + NetlinkDeserializable>() {}
