//! `--metrics-addr`: Prometheus metrics over HTTP, in three parts: the snapshot of what a scrape
//! reports, taken from the analysis (refreshed by the live loop every second); its rendering in
//! the exposition format (kernel counters are totals already, so each scrape renders a fresh
//! registry from the latest snapshot); and the server that answers scrapes and probes.

mod render;
mod server;
mod snapshot;
#[cfg(test)]
mod tests;

pub use render::render;
pub use server::{STALE_AFTER, bind, parse_addr, probe, serve};
pub use snapshot::{
    ClusterMetrics, DiagnosisCount, EventCount, PodDiagnosisCount, Shared, Snapshot, SourceMetrics,
};
