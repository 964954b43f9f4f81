pub mod attach;
pub mod iperf;
pub mod live;
pub mod pods;
pub mod testrun;
pub mod userspace;
