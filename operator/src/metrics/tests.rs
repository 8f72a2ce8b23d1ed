use super::*;

#[test]
fn endpoints_answer_and_metrics_are_named() {
    let m = Metrics::new();
    m.reconcile_started();
    m.error("kube");
    m.certificate("ns", "gw", "server", 1_800_000_000, Some(1_700_000_000));
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
            "edgeway_operator_certificate_not_after_timestamp_seconds{namespace=\"ns\",gateway=\"gw\",certificate=\"server\"} 1800000000",
            "edgeway_operator_certificate_renewal_timestamp_seconds{namespace=\"ns\",gateway=\"gw\",certificate=\"server\"} 1700000000",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
}

/// The served `/metrics`, scraped over HTTP, against docs/operations.md's table (name, type,
/// labels) and back.
#[tokio::test]
async fn served_metrics_are_the_documented_ones() {
    let m = Arc::new(Metrics::new());
    m.reconcile_started();
    m.error("kube");
    m.certificate("ns", "gw", "server", 1_800_000_000, Some(1_700_000_000));
    m.certs_issued.inc();
    m.api_calls_saved
        .get_or_create(&SavedLabels { call: "apply" })
        .inc();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let server = tokio::spawn(serve(addr, m));
    let mut text = String::new();
    // Until the server is listening.
    for _ in 0..100 {
        if let Ok(mut c) = edgeway_testkit::client::Conn::plain(addr).await {
            let r = c.get("/metrics", &[]).await.unwrap();
            text = String::from_utf8_lossy(&r.body).into_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.abort();
    assert!(
        text.contains("edgeway_operator_reconciles_total 1"),
        "{text}"
    );
    if let Err(diff) = edgeway_testkit::metrics_doc::check_scrape("operator", &text) {
        panic!("/metrics and docs/operations.md disagree:\n{diff}");
    }
}
