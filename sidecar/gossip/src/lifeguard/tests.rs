use super::*;

#[test]
fn health_is_clamped_and_scales_periods() {
    let mut h = LocalHealth::new(8);
    h.apply(-3);
    assert_eq!(h.score(), 0);
    assert_eq!(h.scale(Duration::from_secs(1)), Duration::from_secs(1));
    h.apply(20);
    assert_eq!(h.score(), 7);
    assert_eq!(h.scale(Duration::from_millis(500)), Duration::from_secs(4));
    h.apply(-1);
    assert_eq!(h.score(), 6);
}

#[test]
fn failed_probe_delta_counts_missing_nacks() {
    assert_eq!(LocalHealth::failed_probe_delta(0, 0), 1);
    assert_eq!(LocalHealth::failed_probe_delta(3, 3), 0);
    assert_eq!(LocalHealth::failed_probe_delta(3, 1), 2);
}

#[test]
fn suspicion_timeout_shrinks_with_confirmations() {
    let t = SuspicionTimeout::for_cluster(1000, Duration::from_secs(1), 4, 3);
    assert_eq!(t.max, Duration::from_secs(12));
    assert_eq!(t.min, Duration::from_secs(3));
    let seq: Vec<_> = (0..5).map(|c| t.timeout(c)).collect();
    assert_eq!(seq[0], t.max);
    assert!(seq[1] < seq[0] && seq[2] < seq[1] && seq[3] < seq[2]);
    assert_eq!(seq[3], t.min);
    assert_eq!(seq[4], t.min);
}

#[test]
fn small_clusters_keep_min_below_max() {
    let t = SuspicionTimeout::for_cluster(5, Duration::from_millis(100), 4, 3);
    assert_eq!(t.max, Duration::from_millis(400));
    assert_eq!(t.min, Duration::from_millis(300));
}
