//! Reading what the programs send: the one events ring buffer of a run, and their log.

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};

use crate::{
    kernel::{drops::KernelDrop, event::DecodeError},
    model::{Captured, Verdict},
};

/// A decoded record: a verdict, and the frame's first bytes when capture is on. The verdict names
/// its source by slot.
pub type Received = (Verdict, Option<Captured>);

/// Moves records from the events ring buffer to the main task until told to stop, then drains
/// what is left so that the final summary misses nothing.
pub async fn read_events(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Received>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    read_records(ring, tx, stop, Verdict::decode_with_capture).await
}

/// The same for the kernel-drop ring buffer.
pub async fn read_drops(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<KernelDrop>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    read_records(ring, tx, stop, KernelDrop::decode).await
}

async fn read_records<T>(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<T>,
    mut stop: watch::Receiver<bool>,
    decode: fn(&[u8]) -> Result<T, DecodeError>,
) -> Result<()> {
    // SAFETY: the ring buffer owns its fd and keeps it open, unreplaced, while the AsyncFd lives.
    let mut fd = unsafe { AsyncFd::register(ring) }.context("watching the ring buffer")?;
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &tx, decode).await;
                guard.clear_ready();
            }
            _ = stop.changed() => {
                drain(fd.get_mut(), &tx, decode).await;
                return Ok(());
            }
        }
    }
}

async fn drain<T>(
    ring: &mut RingBuf<MapData>,
    tx: &mpsc::Sender<T>,
    decode: fn(&[u8]) -> Result<T, DecodeError>,
) {
    loop {
        let decoded = match ring.next() {
            Some(record) => decode(&record),
            None => return,
        };
        match decoded {
            Ok(raw) => {
                if tx.send(raw).await.is_err() {
                    return;
                }
            }
            Err(e) => log::warn!("{e}"),
        }
    }
}

/// Forwards the programs' aya-log records (`-v`) to the `log` crate as they arrive.
pub async fn forward_kernel_log(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the logger owns its ring buffer fd for as long as the AsyncFd lives.
    let Ok(mut fd) = (unsafe { AsyncFd::register(logger) }) else {
        return;
    };
    while let Ok(mut guard) = fd.readable_mut().await {
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}
