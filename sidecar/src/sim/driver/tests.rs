use super::*;
use crate::sim::SimulationConfig;

fn fleet(count: u32) -> Arc<Mutex<Fleet>> {
    let cfg: SimulationConfig = serde_json::from_value(serde_json::json!({
        "count": count,
        "properties": [{"name": "v", "baseType": "NUMBER", "intervalMs": 100,
                        "generator": {"kind": "uniform", "min": 0, "max": 1}}]
    }))
    .unwrap();
    Arc::new(Mutex::new(Fleet::new(&cfg).unwrap()))
}

#[tokio::test(flavor = "current_thread")]
async fn driver_sends_batches_at_the_configured_rate() {
    // 100 devices every 100 ms: one update per wall-clock millisecond.
    let f = fleet(100);
    let (tx, mut rx) = mpsc::channel(1024);
    let began = Instant::now();
    let h = spawn(f.clone(), Duration::from_millis(20), tx);
    let mut got = 0usize;
    let mut batches = 0usize;
    while began.elapsed() < Duration::from_millis(500) {
        let b = rx.recv().await.unwrap();
        assert!(!b.is_empty());
        got += b.len();
        batches += 1;
    }
    h.abort();
    let elapsed = began.elapsed().as_millis() as usize;
    // Every due update is produced however late a tick is, so the count follows the clock
    // within one interval's worth (100 updates) plus a tick's worth.
    assert!(
        got + 130 >= elapsed && got <= elapsed + 130,
        "{got} updates in {elapsed} ms"
    );
    assert!(batches >= 10, "{batches} batches");
    let stats = lock(&f).stats().clone();
    assert!(stats.updates_generated.load(Ordering::Relaxed) >= got as u64);
    assert_eq!(stats.batches_dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_channel_drops_batches_instead_of_blocking() {
    let f = fleet(1000);
    let (tx, rx) = mpsc::channel(2);
    let h = spawn(f.clone(), Duration::from_millis(10), tx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = lock(&f).stats().clone();
    // Nobody reads: two batches fit, the rest are dropped while ticks continue.
    assert!(stats.batches_dropped.load(Ordering::Relaxed) >= 5);
    assert!(stats.updates_generated.load(Ordering::Relaxed) >= 1000);
    drop(rx);
    // The driver notices the closed channel on its next send and ends.
    tokio::time::timeout(Duration::from_secs(2), h)
        .await
        .expect("driver ends when the receiver is gone")
        .unwrap();
}
