//! Minimal rtnetlink queries about links (interfaces). A socket belongs to the network namespace
//! of the thread that creates it, so calling these from a thread inside another namespace asks
//! about that namespace.

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn request(socket: &Socket, link: LinkMessage, flags: u16) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetLink(link)),
    );
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0)?;
    Ok(())
}

fn connect() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// The route messages in one datagram, and whether it ended a dump (NLMSG_DONE).
pub(crate) fn parse_datagram(buf: &[u8]) -> io::Result<(Vec<RouteNetlinkMessage>, bool)> {
    let mut messages = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let msg =
            NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..]).map_err(invalid)?;
        let len = msg.header.length as usize;
        match msg.payload {
            NetlinkPayload::InnerMessage(m) => messages.push(m),
            NetlinkPayload::Done(_) => return Ok((messages, true)),
            NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
            _ => {}
        }
        if len == 0 {
            break;
        }
        offset += len;
    }
    Ok((messages, false))
}

/// Reads replies until the kernel says done; returns the links in them.
fn collect_links(socket: &Socket, multipart: bool) -> io::Result<Vec<LinkMessage>> {
    let mut links = Vec::new();
    loop {
        let (buf, _) = socket.recv_from_full()?;
        let (messages, done) = parse_datagram(&buf)?;
        links.extend(messages.into_iter().filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        }));
        if done || !multipart {
            return Ok(links);
        }
    }
}

/// The link with `ifindex`.
pub fn get_link(ifindex: u32) -> io::Result<LinkMessage> {
    let socket = connect()?;
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    request(&socket, link, NLM_F_REQUEST)?;
    collect_links(&socket, false)?
        .pop()
        .ok_or_else(|| invalid("no link in the reply"))
}

/// Every link in this network namespace.
pub fn list_links() -> io::Result<Vec<LinkMessage>> {
    let socket = connect()?;
    request(&socket, LinkMessage::default(), NLM_F_REQUEST | NLM_F_DUMP)?;
    collect_links(&socket, true)
}

pub fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// The link kind (`veth`, `bond`, `vlan`, ...); `None` for physical devices and loopback.
pub fn link_kind(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.to_string()),
            _ => None,
        }),
        _ => None,
    })
}

pub fn is_loopback(link: &LinkMessage) -> bool {
    link.header.flags.contains(LinkFlags::Loopback)
}

/// A link appearing (or changing) and a link going away.
#[derive(Debug)]
pub enum LinkEvent {
    New(LinkMessage),
    Del(LinkMessage),
}

/// Link notifications (RTNLGRP_LINK) for the namespace the socket was created in.
pub struct LinkMonitor {
    socket: Socket,
}

/// RTMGRP_LINK from linux/rtnetlink.h.
const RTMGRP_LINK: u32 = 1;

impl LinkMonitor {
    /// Subscribes; create it before listing links so that no change falls between the two.
    pub fn new(poll: std::time::Duration) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
        let tv = libc::timeval {
            tv_sec: poll.as_secs() as libc::time_t,
            tv_usec: poll.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: a valid socket fd and a timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { socket })
    }

    /// Waits up to the poll interval; returns the events received (none on timeout).
    pub fn next_events(&self) -> io::Result<Vec<LinkEvent>> {
        let buf = match self.socket.recv_from_full() {
            Ok((buf, _)) => buf,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Vec::new());
            }
            // Includes ENOBUFS (the kernel dropped notifications): the caller rescans.
            Err(e) => return Err(e),
        };
        let (messages, _) = parse_datagram(&buf)?;
        let events = messages
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(LinkEvent::New(link)),
                RouteNetlinkMessage::DelLink(link) => Some(LinkEvent::Del(link)),
                _ => None,
            })
            .collect();
        Ok(events)
    }
}
