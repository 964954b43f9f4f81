pub mod report;
pub mod run;
