//! An `AF_PACKET` `sendmmsg` flood out of one interface, shared by `bench --live` (as fast as the
//! machine goes, for a few seconds) and `soak` (paced, for minutes). The kernel leaves the frames'
//! checksums alone, so the peer sees exactly these bytes.

use std::time::{Duration, Instant};

use checksum_testkit::netns::packet_socket;

/// Frames per `sendmmsg` call.
const BATCH: usize = 64;

/// Sends `frames` round-robin out of `iface` (call it from a thread inside the interface's
/// namespace) until `stop` says so, checked once per batch; at most `pps` frames a second when
/// given. Returns the frames sent.
pub fn flood(
    iface: &str,
    frames: &[Vec<u8>],
    pps: Option<u64>,
    mut stop: impl FnMut() -> bool,
) -> u64 {
    assert!(!frames.is_empty(), "nothing to send");
    let (fd, mut addr) = packet_socket(iface);
    // One iovec per frame, and a batch of messages cycling through them.
    let mut iovs: Vec<libc::iovec> = frames
        .iter()
        .map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut _,
            iov_len: f.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH.max(frames.len()))
        .map(|i| {
            // SAFETY: mmsghdr is a plain C struct of integers and raw pointers; all zeroes is a
            // valid value.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (&raw mut addr).cast();
            m.msg_hdr.msg_namelen = u32::try_from(size_of::<libc::sockaddr_ll>()).unwrap();
            m.msg_hdr.msg_iov = &raw mut iovs[i % frames.len()];
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut next = 0usize;
    while !stop() {
        // Paced: wait until the schedule catches up with what was sent.
        if let Some(pps) = pps {
            let due = Duration::from_secs_f64(sent as f64 / pps as f64);
            if let Some(ahead) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        let batch = BATCH.min(msgs.len() - next);
        // SAFETY: `batch` <= msgs.len() - next headers; their name, iovec and frame pointers point
        // into `addr`, `iovs` and `frames`, all alive and unmoved for the whole loop.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                msgs[next..].as_mut_ptr(),
                u32::try_from(batch).expect("at most BATCH"),
                0,
            )
        };
        // Negative on an error (a full queue, say): try again.
        if let Ok(n @ 1..) = usize::try_from(n) {
            sent += n as u64;
            next = (next + n) % msgs.len();
        }
    }
    // SAFETY: closes the socket packet_socket opened for us; it is not used afterwards.
    unsafe { libc::close(fd) };
    sent
}
