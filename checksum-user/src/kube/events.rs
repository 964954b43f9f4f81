//! Kubernetes Events on the receiving Pod of a flow with a problem diagnosis, as kubectl users
//! expect them: one Event per pod, flow and finding, whose `count` grows (with `lastTimestamp`
//! and `series`) rather than a new Event each time; at most one write per Event per
//! `--event-interval`, and at most [`BUCKET`] writes in a burst across all of them
//! ([`REFILL`] a minute after that). `reportingController` is `checksum-audit`.
//!
//! The aggregation is pure (`Aggregator`); `post` is the task that writes.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Event;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    Shared,
    errors::{ApiFailure, forbidden_line},
    lock,
};
use crate::report::notice;

/// The Events' `reportingController` and `source.component`.
pub const CONTROLLER: &str = "checksum-audit";
/// Most Events followed at once; the least recently seen is forgotten first.
pub const MAX_TRACKED: usize = 1024;
/// Writes in a burst, across all Events.
pub const BUCKET: u32 = 10;
/// Writes a minute once the burst is spent.
pub const REFILL: u32 = 10;
/// The API server refuses longer messages.
pub const MAX_MESSAGE: usize = 1024;

/// The pod an Event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// A problem diagnosis of a flow that a pod on this node receives, as the live loop sees it at
/// each summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub pod: PodRef,
    /// Identifies the finding: flow, place and diagnosis (`Report::key_of`).
    pub key: u64,
    pub reason: &'static str,
    pub message: String,
    /// Mismatching packets of the flow so far: the Event counts again when it grows.
    pub mismatches: u64,
}

impl Report {
    /// A stable key from the parts that make one Event.
    pub fn key_of(parts: &impl Hash) -> u64 {
        // std's SipHash with fixed keys: the same finding gets the same Event name across agent
        // restarts, so a restarted agent updates its Event instead of adding one.
        let mut h = std::hash::DefaultHasher::new();
        parts.hash(&mut h);
        h.finish()
    }

    /// The Event's name: `POD.csa-KEY` (unique per finding, and kept below 253 characters).
    pub fn event_name(&self) -> String {
        let pod: String = self.pod.name.chars().take(200).collect();
        format!("{pod}.csa-{:016x}", self.key)
    }
}

/// One Event as followed here.
#[derive(Debug, Clone)]
struct Tracked {
    report: Report,
    /// Times seen with new mismatches (the Event's `count`).
    count: u32,
    first: stamp::Stamp,
    last: stamp::Stamp,
    last_seen: Instant,
    /// When it was last written, and the count then (`None`: not created yet).
    written: Option<(Instant, u32)>,
}

/// A write to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub report: Report,
    pub count: u32,
    pub create: bool,
    pub first: stamp::Stamp,
    pub last: stamp::Stamp,
}

/// Times as the API writes them (RFC 3339, UTC).
pub mod stamp {
    /// Seconds and microseconds since the epoch.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Stamp(pub i128);

    impl Stamp {
        pub fn now() -> Self {
            Self(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0)),
            )
        }

        /// `2026-12-02T06:00:00Z` (Time: seconds).
        pub fn seconds(self) -> String {
            let full = crate::sys::clock::rfc3339(self.0);
            format!("{}Z", &full[..19])
        }

        /// `2026-12-02T06:00:00.123456Z` (`MicroTime`).
        pub fn micros(self) -> String {
            crate::sys::clock::rfc3339(self.0)
        }
    }
}

/// Aggregates reports into Events and decides when each is written.
#[derive(Debug)]
pub struct Aggregator {
    interval: Duration,
    tracked: HashMap<u64, Tracked>,
    tokens: f64,
    refilled: Instant,
    /// Writes put off by the rate limits (they happen later, with the count by then).
    pub deferred: u64,
}

impl Aggregator {
    pub fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval,
            tracked: HashMap::new(),
            tokens: f64::from(BUCKET),
            refilled: now,
            deferred: 0,
        }
    }

    /// Takes one report: a new finding, or one whose mismatches grew, counts once more.
    pub fn observe(&mut self, report: Report, now: Instant, stamp: stamp::Stamp) {
        if let Some(t) = self.tracked.get_mut(&report.key) {
            if report.mismatches > t.report.mismatches {
                t.count = t.count.saturating_add(1);
                t.last = stamp;
            }
            t.last_seen = now;
            t.report = report;
            return;
        }
        if self.tracked.len() >= MAX_TRACKED
            && let Some(oldest) = self
                .tracked
                .iter()
                .min_by_key(|(_, t)| t.last_seen)
                .map(|(k, _)| *k)
        {
            self.tracked.remove(&oldest);
        }
        self.tracked.insert(
            report.key,
            Tracked {
                report,
                count: 1,
                first: stamp,
                last: stamp,
                last_seen: now,
                written: None,
            },
        );
    }

    /// The writes due now: Events never written, and those whose count grew and whose last
    /// write is `interval` old, as far as the shared budget goes.
    pub fn due(&mut self, now: Instant) -> Vec<Write> {
        let per_sec = f64::from(REFILL) / 60.0;
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * per_sec)
            .min(f64::from(BUCKET));
        self.refilled = now;
        let mut ready: Vec<&mut Tracked> = self
            .tracked
            .values_mut()
            .filter(|t| match t.written {
                None => true,
                Some((at, count)) => count != t.count && now.duration_since(at) >= self.interval,
            })
            .collect();
        // New Events first, then the oldest writes.
        ready.sort_by_key(|t| (t.written.is_some(), t.written.map(|(at, _)| at)));
        let mut out = Vec::new();
        for t in ready {
            if self.tokens < 1.0 {
                self.deferred += 1;
                continue;
            }
            self.tokens -= 1.0;
            out.push(Write {
                report: t.report.clone(),
                count: t.count,
                create: t.written.is_none(),
                first: t.first,
                last: t.last,
            });
            t.written = Some((now, t.count));
        }
        out
    }

    /// A write failed: try it again at the next `due` (a create stays a create).
    pub fn failed(&mut self, key: u64, was_create: bool) {
        if let Some(t) = self.tracked.get_mut(&key) {
            t.written = if was_create {
                None
            } else {
                t.written.map(|(at, _)| (at, 0))
            };
        }
    }

    /// The Event is gone on the server (expired): create it again next time.
    pub fn recreate(&mut self, key: u64) {
        if let Some(t) = self.tracked.get_mut(&key) {
            t.written = None;
        }
    }

    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }
}

/// What to put in the Event of `w` (`create`: the whole object; otherwise a merge patch).
pub fn event_json(w: &Write, node: &str) -> Value {
    let mut message = w.report.message.clone();
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE - 3;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    let series =
        (w.count > 1).then(|| json!({"count": w.count, "lastObservedTime": w.last.micros()}));
    if !w.create {
        return json!({
            "count": w.count,
            "lastTimestamp": w.last.seconds(),
            "reason": w.report.reason,
            "message": message,
            "series": series,
        });
    }
    let instance: String = format!("{CONTROLLER}-{node}").chars().take(128).collect();
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": w.report.event_name(), "namespace": w.report.pod.namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": w.report.pod.namespace,
            "name": w.report.pod.name,
            "uid": w.report.pod.uid,
        },
        "type": "Warning",
        "reason": w.report.reason,
        "message": message,
        "action": "Audit",
        "count": w.count,
        "firstTimestamp": w.first.seconds(),
        "lastTimestamp": w.last.seconds(),
        "eventTime": w.first.micros(),
        "series": series,
        "source": {"component": CONTROLLER, "host": node},
        "reportingComponent": CONTROLLER,
        "reportingInstance": instance,
    })
}

/// Posts the Events of the reports it receives until the channel closes.
pub async fn post(
    client: Client,
    node: String,
    interval: Duration,
    mut rx: mpsc::Receiver<Report>,
    shared: Shared,
) {
    let mut agg = Aggregator::new(interval, Instant::now());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // After an RBAC refusal: no write until then (said once).
    let mut forbidden_until: Option<Instant> = None;
    let mut said_forbidden = false;
    loop {
        tokio::select! {
            report = rx.recv() => match report {
                Some(r) => agg.observe(r, Instant::now(), stamp::Stamp::now()),
                None => return,
            },
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        if forbidden_until.is_some_and(|t| now < t) {
            continue;
        }
        for w in agg.due(now) {
            let api: Api<Event> = Api::namespaced(client.clone(), &w.report.pod.namespace);
            let result = write(&api, &w, &node).await;
            let mut state = lock(&shared);
            state.events.tracked = agg.tracked();
            state.events.deferred = agg.deferred;
            match result {
                Ok(()) => {
                    if w.create {
                        state.events.created += 1;
                    } else {
                        state.events.updated += 1;
                    }
                }
                Err(WriteError::Gone) => {
                    agg.recreate(w.report.key);
                }
                Err(WriteError::Failed(f)) => {
                    state.events.failed += 1;
                    agg.failed(w.report.key, w.create);
                    drop(state);
                    match f {
                        ApiFailure::Forbidden { message } => {
                            forbidden_until = Some(now + Duration::from_secs(600));
                            if !said_forbidden {
                                said_forbidden = true;
                                let verb = if w.create { "create" } else { "patch" };
                                notice::error(
                                    "rbac-forbidden",
                                    &format!(
                                        "{} ({message})",
                                        forbidden_line(
                                            verb,
                                            "events",
                                            &format!("in namespace {}", w.report.pod.namespace),
                                            "Kubernetes Events are not posted (diagnoses are still logged); retrying every 10 minutes"
                                        )
                                    ),
                                );
                            }
                            lock(&shared).events.forbidden = true;
                            break;
                        }
                        ApiFailure::Unreachable(why) | ApiFailure::Other(why) => {
                            log::warn!("posting Event {}: {why}", w.report.event_name());
                        }
                    }
                }
            }
        }
    }
}

enum WriteError {
    /// The Event to update no longer exists (Events expire after an hour).
    Gone,
    Failed(ApiFailure),
}

async fn write(api: &Api<Event>, w: &Write, node: &str) -> Result<(), WriteError> {
    let name = w.report.event_name();
    let body = event_json(w, node);
    if w.create {
        let event: Event = serde_json::from_value(body)
            .map_err(|e| WriteError::Failed(ApiFailure::Other(e.to_string())))?;
        return match api.create(&PostParams::default(), &event).await {
            Ok(_) => Ok(()),
            // Made by an earlier run of this agent: take it over with our count.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let mut update = w.clone();
                update.create = false;
                patch(api, &name, &event_json(&update, node)).await
            }
            Err(e) => Err(WriteError::Failed(ApiFailure::of_client(&e))),
        };
    }
    patch(api, &name, &body).await
}

async fn patch(api: &Api<Event>, name: &str, body: &Value) -> Result<(), WriteError> {
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(body))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(WriteError::Gone),
        Err(e) => Err(WriteError::Failed(ApiFailure::of_client(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(key: u64, mismatches: u64) -> Report {
        Report {
            pod: PodRef {
                namespace: "default".into(),
                name: "web-1".into(),
                uid: "u".into(),
            },
            key,
            reason: "ChecksumMismatch",
            message: "m".into(),
            mismatches,
        }
    }

    #[test]
    fn one_event_per_finding_whose_count_grows_at_most_once_an_interval() {
        let t0 = Instant::now();
        let s = stamp::Stamp(1_800_000_000_000_000_000);
        let mut agg = Aggregator::new(Duration::from_secs(60), t0);
        agg.observe(report(1, 5), t0, s);
        let w = agg.due(t0);
        assert_eq!(w.len(), 1);
        assert!(w[0].create);
        assert_eq!(w[0].count, 1);
        // Seen again with more mismatches, and again with none new.
        agg.observe(report(1, 9), t0 + Duration::from_secs(5), s);
        agg.observe(report(1, 9), t0 + Duration::from_secs(10), s);
        agg.observe(report(1, 12), t0 + Duration::from_secs(15), s);
        assert!(
            agg.due(t0 + Duration::from_secs(30)).is_empty(),
            "rate-limited"
        );
        let w = agg.due(t0 + Duration::from_secs(61));
        assert_eq!(w.len(), 1);
        assert!(!w[0].create);
        assert_eq!(w[0].count, 3);
        assert!(
            agg.due(t0 + Duration::from_secs(200)).is_empty(),
            "nothing new"
        );
    }

    #[test]
    fn the_budget_bounds_bursts_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let s = stamp::Stamp(0);
        let mut agg = Aggregator::new(Duration::from_secs(1), t0);
        for k in 0..(u64::from(BUCKET) + 5) {
            agg.observe(report(k, 1), t0, s);
        }
        assert_eq!(agg.due(t0).len(), BUCKET as usize);
        assert_eq!(agg.deferred, 5);
        // 6 s later one token is back.
        assert_eq!(agg.due(t0 + Duration::from_secs(6)).len(), 1);
        for k in 0..(u64::try_from(MAX_TRACKED).unwrap() + 10) {
            agg.observe(report(1000 + k, 1), t0 + Duration::from_millis(k), s);
        }
        assert_eq!(agg.tracked(), MAX_TRACKED);
    }

    #[test]
    fn the_event_json_is_what_the_api_takes() {
        let w = Write {
            report: Report {
                message: "x".repeat(2000),
                ..report(0xabc, 5)
            },
            count: 2,
            create: true,
            first: stamp::Stamp(1_800_000_000_123_456_000),
            last: stamp::Stamp(1_800_000_060_000_000_000),
        };
        let v = event_json(&w, "node-1");
        assert_eq!(v["metadata"]["name"], "web-1.csa-0000000000000abc");
        assert_eq!(v["reportingComponent"], CONTROLLER);
        assert_eq!(v["reportingInstance"], "checksum-audit-node-1");
        assert_eq!(v["involvedObject"]["kind"], "Pod");
        assert_eq!(v["firstTimestamp"], "2027-01-15T08:00:00Z");
        assert_eq!(v["eventTime"], "2027-01-15T08:00:00.123456Z");
        assert_eq!(v["series"]["count"], 2);
        assert!(v["message"].as_str().unwrap().len() <= MAX_MESSAGE);
        let _: Event = serde_json::from_value(v).expect("an Event");
        let patch = event_json(&Write { create: false, ..w }, "node-1");
        assert_eq!(patch["count"], 2);
        assert!(patch.get("involvedObject").is_none());
    }
}
