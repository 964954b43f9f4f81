//! Aggregates mismatches by interface, hook, layer, flow and kind, with a bound on memory:
//! past `max_keys` distinct keys, new keys are counted as untracked instead of stored.

use std::collections::HashMap;

use checksum_common::{Hook, Kind, Layer, Status};

use crate::event::{Flow, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Where it was seen: an attachment (interface and hook) in live mode, 0 for a replay.
    pub source: u32,
    pub hook: Hook,
    pub layer: Layer,
    pub flow: Flow,
    pub kind: Kind,
}

impl Key {
    /// The row a verdict seen at `source` belongs to.
    pub fn of(source: u32, v: &Verdict) -> Self {
        Self {
            source,
            hook: v.hook,
            layer: v.layer,
            flow: v.flow,
            kind: v.kind,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub count: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// The latest got/want pair seen.
    pub got: u16,
    pub want: u16,
}

#[derive(Debug)]
pub struct Aggregator {
    entries: HashMap<Key, Entry>,
    max_keys: usize,
    /// Mismatches whose key did not fit under `max_keys` (still in the kernel counters).
    pub untracked: u64,
}

pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl Default for Aggregator {
    fn default() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }
}

impl Aggregator {
    pub fn with_max_keys(max_keys: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max_keys,
            untracked: 0,
        }
    }

    /// Adds a mismatch seen at `source`; returns true when it opened a new row. Other verdicts
    /// are ignored.
    pub fn add(&mut self, source: u32, v: &Verdict) -> bool {
        if v.status != Status::Bad {
            return false;
        }
        let key = Key::of(source, v);
        if let Some(e) = self.entries.get_mut(&key) {
            e.count += 1;
            e.first_ns = e.first_ns.min(v.timestamp_ns);
            e.last_ns = e.last_ns.max(v.timestamp_ns);
            e.got = v.got;
            e.want = v.want;
            return false;
        }
        if self.entries.len() >= self.max_keys {
            self.untracked += 1;
            return false;
        }
        self.entries.insert(
            key,
            Entry {
                count: 1,
                first_ns: v.timestamp_ns,
                last_ns: v.timestamp_ns,
                got: v.got,
                want: v.want,
            },
        );
        true
    }

    /// Rows, most frequent first (ties by key for a stable order).
    pub fn rows(&self) -> Vec<(Key, Entry)> {
        let mut rows: Vec<_> = self.entries.iter().map(|(k, e)| (*k, *e)).collect();
        rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        rows
    }

    /// How many mismatches `key` has had so far.
    pub fn count(&self, key: &Key) -> u64 {
        self.entries.get(key).map_or(0, |e| e.count)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use checksum_common::event::Direction;

    use super::*;

    fn verdict(sport: u16, kind: Kind, ts: u64) -> Verdict {
        Verdict {
            timestamp_ns: ts,
            ifindex: 3,
            hook: Hook::Xdp,
            direction: Direction::Ingress,
            layer: Layer::Tcp,
            status: Status::Bad,
            kind,
            flow: Flow {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                ports: Some((sport, 80)),
                protocol: 6,
            },
            got: 1,
            want: 2,
            pseudo: 0,
            l4_len: 20,
            ip_id: 0,
            tcp_seq: 0,
        }
    }

    #[test]
    fn groups_by_flow_and_kind() {
        let mut a = Aggregator::default();
        assert!(a.add(3, &verdict(1, Kind::Corrupt, 10)));
        assert!(!a.add(3, &verdict(1, Kind::Corrupt, 5)));
        assert!(a.add(3, &verdict(1, Kind::Zero, 7)));
        let rows = a.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.count, 2);
        assert_eq!((rows[0].1.first_ns, rows[0].1.last_ns), (5, 10));
    }

    #[test]
    fn ignores_verdicts_that_are_not_mismatches() {
        let mut a = Aggregator::default();
        let mut v = verdict(1, Kind::Match, 1);
        v.status = Status::Ok;
        assert!(!a.add(3, &v));
        assert!(a.is_empty());
    }

    #[test]
    fn memory_is_bounded_and_overflow_counted() {
        let mut a = Aggregator::with_max_keys(2);
        for port in 0..5 {
            a.add(3, &verdict(port, Kind::Corrupt, 1));
        }
        a.add(3, &verdict(0, Kind::Corrupt, 2)); // existing rows still count
        assert_eq!(a.len(), 2);
        assert_eq!(a.untracked, 3);
        assert_eq!(a.rows()[0].1.count, 2);
    }
}
