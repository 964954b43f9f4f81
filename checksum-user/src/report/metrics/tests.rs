//! The metrics' unit tests: rendering, probes, the server's address parsing and backoff.

use std::time::Duration;

use checksum_common::{Counters, Kind, Layer, Status};

use super::{
    ClusterMetrics, DiagnosisCount, EventCount, PodDiagnosisCount, STALE_AFTER, Snapshot,
    SourceMetrics, parse_addr, probe, render, server::AcceptBackoff,
};
use crate::{analysis::aggregate::Evicted, lifecycle::Lifecycle};

#[test]
fn addresses_default_to_loopback() {
    assert_eq!(
        parse_addr("9465").unwrap(),
        "127.0.0.1:9465".parse().unwrap()
    );
    assert_eq!(
        parse_addr(":9465").unwrap(),
        "127.0.0.1:9465".parse().unwrap()
    );
    assert_eq!(
        parse_addr("0.0.0.0:9465").unwrap(),
        "0.0.0.0:9465".parse().unwrap()
    );
    assert_eq!(
        parse_addr("[::1]:9465").unwrap(),
        "[::1]:9465".parse().unwrap()
    );
    assert!(parse_addr("localhost").is_err());
    assert!(parse_addr("99999").is_err());
}

#[test]
fn accept_errors_back_off_exponentially_to_a_cap_and_reset_on_success() {
    let mut b = AcceptBackoff::default();
    let ms = Duration::from_millis;
    let steps: Vec<_> = (0..10).map(|_| b.failed()).collect();
    let want = [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000];
    assert_eq!(
        steps.iter().map(|&(p, _)| p).collect::<Vec<_>>(),
        want.map(ms)
    );
    // Each step is logged once; the first pause at the cap is a step, repeats of it are not.
    let logged: Vec<_> = steps.iter().map(|&(_, log)| log).collect();
    assert_eq!(
        logged,
        [true; 9].into_iter().chain([false]).collect::<Vec<_>>()
    );
    // At the cap: one line a minute (the 60th repeat), not one per second.
    let logs_at_max = (0..120).filter(|_| b.failed().1).count();
    assert_eq!(logs_at_max, 2);
    assert_eq!(b.failed().0, AcceptBackoff::MAX);

    b.succeeded();
    assert_eq!(b.failed(), (ms(5), true));
    assert_eq!(b.failed(), (ms(10), true));
}

/// One source with a few counters, events, a diagnosis, drops, a broken hop and tracking.
fn sample() -> Snapshot {
    let mut counters = Counters {
        packets: 42,
        ..Counters::default()
    };
    counters.checks[Layer::Tcp as usize][Status::Bad as usize] = 3;
    counters.mismatches[Layer::Tcp as usize][Kind::Corrupt as usize] = 3;
    Snapshot {
        sources: vec![SourceMetrics {
            iface: "veth0".into(),
            hook: "tc-ingress",
            mode: "tcx",
            attached: true,
            counters,
        }],
        events: vec![EventCount {
            iface: "veth0".into(),
            hook: "tc-ingress",
            kind: "corrupt",
            severity: "problem",
            state: "none",
            encap: "none",
            count: 3,
        }],
        diagnoses: vec![DiagnosisCount {
            iface: "veth0".into(),
            hook: "tc-ingress",
            diagnosis: "stale-after-rewrite",
            severity: "problem",
            mismatches: 3,
            flows: 1,
        }],
        evicted: Evicted::default(),
        lifecycle: Lifecycle {
            attached: 3,
            detached_interface_gone: 2,
            ..Lifecycle::default()
        },
        kernel_drops: Some(([("TCP_CSUM".to_owned(), 5)].into(), 1)),
        broken_hops: [(
            (
                "ns-c/veth-c@tc-egress".to_owned(),
                "ns-m/veth-m0@tc-ingress".to_owned(),
            ),
            2,
        )]
        .into(),
        tracking: crate::analysis::Tracking {
            live: 4,
            expired: 6,
        },
        pods: Vec::new(),
        interface_pods: Vec::new(),
        cluster: None,
        taken_at: None,
    }
}

#[test]
fn pod_series_carry_namespace_and_pod_and_readiness_waits_for_the_watches() {
    let mut s = Snapshot {
        taken_at: Some(std::time::Instant::now()),
        pods: vec![PodDiagnosisCount {
            namespace: "default".into(),
            pod: "web-1".into(),
            diagnosis: "stale-after-rewrite",
            mismatches: 5,
            flows: 1,
        }],
        interface_pods: vec![("veth0".into(), "default".into(), "gw".into())],
        cluster: Some(ClusterMetrics {
            synced: false,
            watches: vec![("pods", false, 2, 7, 0)],
            pods: 3,
            services: 4,
            events_created: 1,
            ..ClusterMetrics::default()
        }),
        ..sample()
    };
    let text = render(&s);
    for want in [
        r#"checksum_audit_pod_problem_mismatches_total{namespace="default",pod="web-1",diagnosis="stale-after-rewrite"} 5"#,
        r#"checksum_audit_pod_problem_flows{namespace="default",pod="web-1",diagnosis="stale-after-rewrite"} 1"#,
        r#"checksum_audit_kube_watch_gaps_total{resource="pods"} 2"#,
        r#"checksum_audit_kube_watch_synced{resource="pods"} 0"#,
        r#"checksum_audit_kube_events_total{reason="created"} 1"#,
        "checksum_audit_kube_pods 3",
        r#"checksum_audit_interface_pod{iface="veth0",namespace="default",pod="gw"} 1"#,
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
    let (status, body) = probe("/readyz", &s).unwrap();
    assert_eq!(status, "503 Service Unavailable");
    assert!(body.contains("Kubernetes API"), "{body}");
    s.cluster.as_mut().unwrap().synced = true;
    assert_eq!(probe("/readyz", &s).unwrap().0, "200 OK");
}

#[test]
fn probes_say_ready_once_attached_and_unhealthy_when_stale() {
    let attaching = sample();
    assert_eq!(
        probe("/readyz", &attaching).unwrap().0,
        "503 Service Unavailable"
    );
    assert_eq!(probe("/healthz", &attaching).unwrap().0, "200 OK");
    let running = Snapshot {
        taken_at: Some(std::time::Instant::now()),
        ..sample()
    };
    assert_eq!(
        probe("/readyz", &running).unwrap(),
        ("200 OK", "ready\n".into())
    );
    assert_eq!(probe("/healthz", &running).unwrap().0, "200 OK");
    let stalled = Snapshot {
        taken_at: std::time::Instant::now().checked_sub(STALE_AFTER * 2),
        ..sample()
    };
    let (status, body) = probe("/healthz", &stalled).unwrap();
    assert_eq!(status, "503 Service Unavailable");
    assert!(body.contains("not refreshed for 20s"), "{body}");
    assert_eq!(probe("/nope", &running), None);
}

#[test]
fn renders_paths_and_tracking() {
    let text = render(&sample());
    assert!(
        text.contains(r#"checksum_audit_broken_hops{from="ns-c/veth-c@tc-egress",to="ns-m/veth-m0@tc-ingress"} 2"#),
        "{text}"
    );
    assert!(
        text.contains("checksum_audit_tracked_flow_halves 4"),
        "{text}"
    );
    assert!(
        text.contains("checksum_audit_tracked_flow_halves_expired_total 6"),
        "{text}"
    );
}

#[test]
fn renders_counters_with_conventional_names() {
    let s = sample();
    let text = render(&s);
    assert!(
        text.contains(r#"checksum_audit_kernel_checksum_drops_total{reason="TCP_CSUM"} 5"#),
        "{text}"
    );
    assert!(
        text.contains("checksum_audit_kernel_checksum_drops_lost_total 1"),
        "{text}"
    );
    // Not traced: no series at all, rather than zeros that look like "no drops".
    let untraced = render(&Snapshot {
        kernel_drops: None,
        ..s.clone()
    });
    assert!(!untraced.contains("kernel_checksum_drops"), "{untraced}");
    assert!(
        text.contains("checksum_audit_attachments_total 3"),
        "{text}"
    );
    assert!(
        text.contains(r#"checksum_audit_detachments_total{reason="interface-deleted"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"checksum_audit_packets_total{iface="veth0",hook="tc-ingress"} 42"#),
        "{text}"
    );
    assert!(text.contains(r#"checksum_audit_checks_total{iface="veth0",hook="tc-ingress",layer="tcp",verdict="bad"} 3"#), "{text}");
    assert!(
        text.contains(r#"checksum_audit_attached{iface="veth0",hook="tc-ingress",mode="tcx"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"checksum_audit_mismatch_events_total{iface="veth0",hook="tc-ingress",kind="corrupt",severity="problem",state="none",encap="none"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"checksum_audit_diagnosed_mismatches_total{iface="veth0",hook="tc-ingress",diagnosis="stale-after-rewrite",severity="problem"} 3"#),
        "{text}"
    );
}
