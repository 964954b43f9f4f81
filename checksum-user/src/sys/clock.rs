//! The clocks: the kernel's `CLOCK_MONOTONIC`, which stamps events, and its conversion to
//! wall-clock time for what is printed.

use std::time::{SystemTime, UNIX_EPOCH};

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of `bpf_ktime_get_ns`, which stamps events
/// and tracked flows' expiry.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Converts kernel `CLOCK_MONOTONIC` timestamps to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock nanoseconds minus monotonic nanoseconds, sampled once.
    offset_ns: i128,
}

impl Clock {
    pub fn new() -> Self {
        let mono = i128::from(monotonic_ns());
        let wall = i128::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        )
        .unwrap_or(i128::MAX);
        Self {
            offset_ns: wall - mono,
        }
    }

    pub fn wall_ns(&self, mono_ns: u64) -> i128 {
        i128::from(mono_ns) + self.offset_ns
    }

    /// RFC 3339 UTC time with microseconds.
    pub fn rfc3339(&self, mono_ns: u64) -> String {
        rfc3339(self.wall_ns(mono_ns))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Formats Unix nanoseconds as RFC 3339 UTC (civil-from-days, H. Hinnant's algorithm).
#[expect(
    clippy::cast_possible_truncation,
    reason = "seconds of any representable date fit an i64, and micros are below 10^6"
)]
pub fn rfc3339(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let micros = (unix_ns.rem_euclid(1_000_000_000) / 1000) as u32;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339(1_795_690_000_123_456_789),
            "2026-11-26T10:46:40.123456Z"
        );
    }
}
