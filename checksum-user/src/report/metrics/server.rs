//! The HTTP side of `--metrics-addr`: `GET /metrics` (rendered from the latest snapshot at each
//! scrape), and `/healthz` and `/readyz` for probes.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{
    render::render,
    snapshot::{Shared, Snapshot},
};

/// A snapshot older than this means the live loop stopped refreshing it: `/healthz` fails.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// `/healthz` and `/readyz` for probes (liveness and readiness of a Kubernetes agent): ready once the
/// programs are attached where the run asked; healthy unless the live loop stopped refreshing
/// the metrics after that. Status line and body.
pub fn probe(path: &str, snapshot: &Snapshot) -> Option<(&'static str, String)> {
    let age = snapshot.taken_at.map(|t| t.elapsed());
    match path {
        "/readyz" => Some(match age {
            Some(_) if snapshot.cluster.as_ref().is_some_and(|c| !c.synced) => (
                "503 Service Unavailable",
                "not ready: programs attached; waiting for the Kubernetes API watches to sync\n"
                    .to_owned(),
            ),
            Some(_) => ("200 OK", "ready\n".to_owned()),
            None => (
                "503 Service Unavailable",
                "not ready: attaching\n".to_owned(),
            ),
        }),
        "/healthz" => Some(match age {
            Some(age) if age > STALE_AFTER => (
                "503 Service Unavailable",
                format!("unhealthy: metrics not refreshed for {}s\n", age.as_secs()),
            ),
            _ => ("200 OK", "ok\n".to_owned()),
        }),
        _ => None,
    }
}

/// `PORT` or `:PORT` binds to loopback (the default, so metrics are not exposed by accident);
/// `ADDR:PORT` binds where it says.
pub fn parse_addr(s: &str) -> Result<SocketAddr> {
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse().with_context(|| {
        format!("--metrics-addr {s}: expected PORT, :PORT or ADDR:PORT (e.g. 9465, 127.0.0.1:9465)")
    })
}

/// Binds now, so that a busy port is an error at startup rather than later.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) => bail!("cannot serve metrics on {addr}: {e}"),
    }
}

/// Answers scrapes until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Shared) {
    let mut backoff = AcceptBackoff::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff.succeeded();
                stream
            }
            Err(e) => {
                let (pause, log) = backoff.failed();
                if log {
                    log::warn!("metrics: accepting a connection: {e} (retrying in {pause:?})");
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &shared).await {
                log::debug!("metrics request: {e}");
            }
        });
    }
}

/// The pause after failed accepts in a row. Errors such as EMFILE (out of descriptors) last until
/// something else closes one, and the listener stays readable meanwhile: retrying at once would
/// spin a core, on the runtime that also drains the ring buffers. So: 5 ms, doubling to 1 s, back
/// to none after a success; one log line per step, and once a minute at the cap, not per retry.
#[derive(Debug, Default)]
pub(super) struct AcceptBackoff {
    /// The last pause, `None` after a success.
    pause: Option<Duration>,
    /// Failures in a row since the pause reached `MAX`.
    at_max: u32,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    pub(super) const MAX: Duration = Duration::from_secs(1);
    /// At the cap, log every this many failures (one a minute).
    const LOG_EVERY_AT_MAX: u32 = 60;

    /// An accept failed: how long to pause before the next, and whether to log the error.
    pub(super) fn failed(&mut self) -> (Duration, bool) {
        let pause = self.pause.map_or(Self::FIRST, |p| (p * 2).min(Self::MAX));
        let log = if self.pause == Some(Self::MAX) {
            self.at_max += 1;
            self.at_max.is_multiple_of(Self::LOG_EVERY_AT_MAX)
        } else {
            true
        };
        self.pause = Some(pause);
        (pause, log)
    }

    /// An accept succeeded: the next failure starts again at `FIRST`.
    pub(super) fn succeeded(&mut self) {
        *self = Self::default();
    }
}

async fn answer(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    // Read the request head (bounded); only the request line matters.
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8_lossy(&head);
    let mut parts = request.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let snapshot = shared.lock().map(|s| s.clone()).unwrap_or_default();
            // Rendering grows with the number of interfaces: not on the thread that drains the
            // ring buffers, where a stall loses events.
            let text = tokio::task::spawn_blocking(move || render(&snapshot))
                .await
                .map_err(std::io::Error::other)?;
            (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            )
        }
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "checksum-audit: metrics at /metrics; probes at /healthz and /readyz\n".to_owned(),
        ),
        ("GET", "/healthz" | "/readyz") => {
            let snapshot = shared.lock().map(|s| s.clone()).unwrap_or_default();
            let (status, body) = probe(path, &snapshot).unwrap_or(("404 Not Found", String::new()));
            (status, "text/plain; charset=utf-8", body)
        }
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
