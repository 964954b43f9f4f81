//! Rendering: text and JSON lines and summaries, the terminal view, and Prometheus metrics over
//! HTTP.

pub mod metrics;
pub mod output;
pub mod path;
pub mod view;
