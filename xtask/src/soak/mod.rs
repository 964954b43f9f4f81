//! `cargo xtask soak`: the run (`run`), and what it produced and reports (`report`).

pub mod report;
pub mod run;
