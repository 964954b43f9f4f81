//! What the verdicts mean: per-flow aggregation, diagnosis of a flow's mismatches, and severity
//! (where a mismatch is a problem).

pub mod aggregate;
pub mod diagnosis;
pub mod severity;
