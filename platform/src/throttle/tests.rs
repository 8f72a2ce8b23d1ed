use super::*;

#[test]
fn an_address_is_refused_after_its_failures_until_the_window_ends() {
    let t = AuthThrottle::default();
    let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    let now = Instant::now();
    for _ in 0..MAX_FAILURES {
        assert!(!t.blocked(a, now));
        t.failed(a, now);
    }
    assert!(t.blocked(a, now));
    assert!(!t.blocked(b, now), "other addresses are not affected");
    assert!(
        !t.blocked(a, now + WINDOW),
        "failures are forgotten after the window"
    );
    t.failed(a, now + WINDOW);
    assert!(
        !t.blocked(a, now + WINDOW),
        "a new window starts from one failure"
    );
}
