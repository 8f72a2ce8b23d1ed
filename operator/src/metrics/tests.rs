use super::*;

#[test]
fn endpoints_answer_and_metrics_are_named() {
    let m = Metrics::new();
    m.reconcile_started();
    m.error("kube");
    m.certificate("ns", "gw", "server", 1_800_000_000);
    assert_eq!(respond(&m, "/healthz").status(), StatusCode::OK);
    assert_eq!(
        respond(&m, "/readyz").status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    m.set_ready(true);
    assert_eq!(respond(&m, "/readyz").status(), StatusCode::OK);
    let text = m.encode();
    for name in [
            "edgeway_operator_reconciles_total 1",
            "edgeway_operator_reconcile_errors_total{reason=\"kube\"} 1",
            "edgeway_operator_reconcile_duration_seconds_count 1",
            "edgeway_operator_certificate_expiry_timestamp_seconds{namespace=\"ns\",gateway=\"gw\",certificate=\"server\"} 1800000000",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
}
