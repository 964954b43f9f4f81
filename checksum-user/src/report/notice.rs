//! Lifecycle lines: what the run does (attached, detached, connected to the API server) and its
//! warnings. Human text on stderr for the CLI; in agent mode one JSON object per line on stdout
//! (`"type": "lifecycle"`), beside the diagnoses and kernel drops, so that a log shipper takes
//! the stream as it is.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

/// Set once at start by agent mode.
static JSON_LINES: AtomicBool = AtomicBool::new(false);

/// Agent mode: lifecycle lines become JSON on stdout.
pub fn set_json_lines(on: bool) {
    JSON_LINES.store(on, Ordering::Relaxed);
}

pub fn json_lines() -> bool {
    JSON_LINES.load(Ordering::Relaxed)
}

/// How much a lifecycle line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// The JSON form of a lifecycle line (`event` is a short stable name such as `attached`).
pub fn json(level: Level, event: &str, message: &str) -> serde_json::Value {
    json!({
        "type": "lifecycle",
        "ts": crate::sys::clock::rfc3339(now_unix_ns()),
        "level": level.name(),
        "event": event,
        "message": message,
    })
}

/// Says `message`: `checksum-audit: [warning: |error: ]message` on stderr, or a JSON line.
pub fn say(level: Level, event: &str, message: &str) {
    if json_lines() {
        println!("{}", json(level, event, message));
    } else {
        match level {
            Level::Info => eprintln!("checksum-audit: {message}"),
            Level::Warning => eprintln!("checksum-audit: warning: {message}"),
            Level::Error => eprintln!("checksum-audit: error: {message}"),
        }
    }
}

pub fn info(event: &str, message: &str) {
    say(Level::Info, event, message);
}

pub fn warning(event: &str, message: &str) {
    say(Level::Warning, event, message);
}

pub fn error(event: &str, message: &str) {
    say(Level::Error, event, message);
}

fn now_unix_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifecycle_line_is_one_json_object() {
        let v = json(Level::Warning, "api-unreachable", "pod names pending");
        assert_eq!(v["type"], "lifecycle");
        assert_eq!(v["level"], "warning");
        assert_eq!(v["event"], "api-unreachable");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        assert!(!v.to_string().contains('\n'));
    }
}
