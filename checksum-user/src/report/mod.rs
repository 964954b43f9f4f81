//! Rendering: text and JSON lines and summaries, the terminal view, and Prometheus metrics over
//! HTTP, and the lifecycle lines (text on stderr, or JSON lines in agent mode).

pub mod json;
pub mod metrics;
pub mod notice;
pub mod output;
pub mod path;
pub mod view;
