use super::*;
use crate::tunnel::config::FsyncPolicy;
use std::fs::OpenOptions;
use std::io::Write;

fn bounded(capacity: usize, overflow: OverflowPolicy) -> QueueConfig {
    QueueConfig {
        capacity,
        overflow,
        ..QueueConfig::default()
    }
}

fn up(thing: &str, i: i64) -> Update {
    Update {
        thing: thing.into(),
        property: "p".into(),
        base_type: BaseType::Integer,
        value: serde_json::json!(i),
        time_ms: i,
        quality: Quality::Good,
        event: false,
    }
}

fn values(batch: &[(u64, Update)]) -> Vec<i64> {
    batch.iter().map(|(_, u)| u.time_ms).collect()
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgeway-outbox-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn unacked_updates_are_resent_in_order_after_rewind() {
    let mut o = Outbox::in_memory(&bounded(10, OverflowPolicy::DropOldest));
    for i in 0..5 {
        o.push(up("a", i));
    }
    let b1 = o.next_batch(3);
    assert_eq!(values(&b1), vec![0, 1, 2]);
    o.ack([b1[0].0]);
    assert_eq!(values(&o.next_batch(10)), vec![3, 4]);
    assert!(o.next_batch(10).is_empty());
    o.rewind();
    assert_eq!(values(&o.next_batch(10)), vec![1, 2, 3, 4]);
    assert_eq!(o.len(), 4);
}

#[test]
fn groups_stop_at_the_thing_limit_and_keep_order() {
    let mut o = Outbox::in_memory(&bounded(100, OverflowPolicy::DropOldest));
    for (i, t) in ["a", "b", "a", "c", "b", "a"].iter().enumerate() {
        o.push(up(t, i as i64));
    }
    // Two things fit: "c" (4th update) stops the batch, so the later "b" and "a" wait.
    let g = o.next_groups(100, 2);
    let shape: Vec<(&str, Vec<i64>)> = g.iter().map(|b| (&*b.thing, values(&b.rows))).collect();
    assert_eq!(shape, vec![("a", vec![0, 2]), ("b", vec![1])]);
    let g = o.next_groups(2, 10);
    let shape: Vec<(&str, Vec<i64>)> = g.iter().map(|b| (&*b.thing, values(&b.rows))).collect();
    assert_eq!(shape, vec![("c", vec![3]), ("b", vec![4])]);
    assert_eq!(values(&o.next_groups(10, 10)[0].rows), vec![5]);
    assert!(!o.has_unsent());
    o.rewind();
    assert_eq!(o.next_groups(100, 100).len(), 3);
}

#[test]
fn overflow_policies_drop_and_count() {
    let mut o = Outbox::in_memory(&bounded(3, OverflowPolicy::DropOldest));
    for i in 0..5 {
        o.push(up("a", i));
    }
    assert_eq!(o.dropped(), 2);
    assert_eq!(values(&o.next_batch(10)), vec![2, 3, 4]);

    let mut o = Outbox::in_memory(&bounded(3, OverflowPolicy::DropNewest));
    for i in 0..5 {
        o.push(up("a", i));
    }
    assert_eq!(o.dropped(), 2);
    assert_eq!(values(&o.next_batch(10)), vec![0, 1, 2]);
}

#[test]
fn persisted_outbox_survives_restart_without_losing_or_repeating() {
    let dir = temp("restart");
    {
        let mut o = Outbox::open(&dir, &bounded(100, OverflowPolicy::DropOldest)).unwrap();
        for i in 0..6 {
            o.push(up("a", i));
        }
        let b = o.next_batch(2);
        o.ack(b.iter().map(|(s, _)| *s));
        o.flush().unwrap();
    }
    let mut o = Outbox::open(&dir, &bounded(100, OverflowPolicy::DropOldest)).unwrap();
    assert_eq!(values(&o.next_batch(100)), vec![2, 3, 4, 5]);
    // Sequence numbers keep growing across restarts, so acks never collide.
    o.push(up("a", 6));
    let b = o.next_batch(100);
    assert_eq!(values(&b), vec![6]);
    assert!(b[0].0 > 6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn torn_last_line_is_ignored_and_compaction_keeps_the_rest() {
    let dir = temp("torn");
    {
        let mut o = Outbox::open(&dir, &bounded(50_000, OverflowPolicy::DropOldest)).unwrap();
        for i in 0..30_000 {
            o.push(up("a", i));
        }
        let b = o.next_batch(29_900);
        o.flush().unwrap();
        o.ack(b.iter().map(|(s, _)| *s));
        o.flush().unwrap();
    }
    let log = dir.join("queue.log");
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"{\"s\":99999,\"t\":\"a\"").unwrap();
    drop(f);
    let lines = std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(lines < 200, "log was not compacted: {lines} lines");
    let mut o = Outbox::open(&dir, &bounded(50_000, OverflowPolicy::DropOldest)).unwrap();
    let rest = values(&o.next_batch(50_000));
    assert_eq!(rest, (29_900..30_000).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reload_over_capacity_applies_the_policy() {
    let dir = temp("shrink");
    {
        let mut o = Outbox::open(&dir, &bounded(10, OverflowPolicy::DropOldest)).unwrap();
        for i in 0..10 {
            o.push(up("a", i));
        }
        o.flush().unwrap();
    }
    let mut o = Outbox::open(&dir, &bounded(4, OverflowPolicy::DropOldest)).unwrap();
    assert_eq!(values(&o.next_batch(10)), vec![6, 7, 8, 9]);
    assert_eq!(o.dropped(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

fn log_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("queue.log")).unwrap().len()
}

#[test]
fn out_of_order_acks_are_not_resent_after_a_restart() {
    // Requests for different things are answered in any order: a watermark alone would resend
    // what was acknowledged above the oldest unanswered update.
    let dir = temp("ooo");
    {
        let mut o = Outbox::open(&dir, &bounded(100, OverflowPolicy::DropOldest)).unwrap();
        for i in 0..6 {
            o.push(up("a", i));
        }
        let b = o.next_batch(6);
        // Only the acks, no flush: ack itself reaches the kernel.
        o.ack([b[1].0, b[3].0, b[5].0]);
        std::mem::forget(o);
    }
    let mut o = Outbox::open(&dir, &bounded(100, OverflowPolicy::DropOldest)).unwrap();
    assert_eq!(values(&o.next_batch(100)), vec![0, 2, 4]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pushes_reach_the_file_at_flush_without_a_clean_stop() {
    let dir = temp("killed");
    {
        let mut o = Outbox::open(&dir, &bounded(100, OverflowPolicy::DropOldest)).unwrap();
        for i in 0..3 {
            o.push(up("a", i));
        }
        o.flush().unwrap();
        // As SIGKILL would: no destructor runs.
        std::mem::forget(o);
    }
    let mut o = Outbox::open(&dir, &bounded(100, OverflowPolicy::DropOldest)).unwrap();
    assert_eq!(values(&o.next_batch(100)), vec![0, 1, 2]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn byte_bound_evicts_oldest_or_refuses_newest() {
    let one = Outbox::in_memory(&QueueConfig {
        max_bytes: Some(1 << 20),
        ..QueueConfig::default()
    })
    .record_bytes(1, &up("a", 1));
    assert!((60..200).contains(&one), "a record of {one} bytes");
    for (policy, kept) in [
        (OverflowPolicy::DropOldest, vec![6, 7, 8, 9]),
        (OverflowPolicy::DropNewest, vec![0, 1, 2, 3]),
    ] {
        let mut o = Outbox::in_memory(&QueueConfig {
            max_bytes: Some(4 * one + one / 2),
            overflow: policy,
            ..QueueConfig::default()
        });
        for i in 0..10 {
            o.push(up("a", i));
        }
        assert_eq!(values(&o.next_batch(100)), kept, "{policy:?}");
        let s = o.stats();
        assert_eq!((s.len, s.dropped), (4, 6));
        assert!(s.bytes <= 4 * one + one / 2);
    }
    // An update larger than the whole queue is dropped, not kept over the bound.
    let mut o = Outbox::in_memory(&QueueConfig {
        max_bytes: Some(1024),
        ..QueueConfig::default()
    });
    let mut big = up("a", 1);
    big.value = serde_json::json!("x".repeat(2000));
    assert!(!o.push(big));
    assert_eq!((o.len(), o.dropped()), (0, 1));
}

#[test]
fn offline_overflow_compacts_the_log_within_the_byte_bound() {
    // The EMS's default store: 64 KiB. Offline for 20,000 updates (~2.5 MB of records), the
    // file must stay within twice the bound, and the newest updates must all be there.
    let dir = temp("offline-compact");
    let config = QueueConfig {
        max_bytes: Some(64 << 10),
        ..QueueConfig::default()
    };
    let mut o = Outbox::open(&dir, &config).unwrap();
    let mut largest = 0;
    for i in 0..20_000 {
        o.push(up("a", i));
        if i % 100 == 0 {
            o.flush().unwrap();
            largest = largest.max(log_bytes(&dir));
        }
    }
    o.flush().unwrap();
    assert!(largest <= 2 * (64 << 10), "log grew to {largest} bytes");
    let kept = o.len();
    assert!(o.stats().bytes <= 64 << 10);
    drop(o);
    let mut o = Outbox::open(&dir, &config).unwrap();
    let back = values(&o.next_batch(100_000));
    assert_eq!(back.len(), kept);
    assert_eq!(back, ((20_000 - kept as i64)..20_000).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_legacy_watermark_log_is_read_and_converted() {
    let dir = temp("legacy");
    std::fs::create_dir_all(&dir).unwrap();
    let mut log = String::new();
    for s in 1..=5 {
        log.push_str(&String::from_utf8(record_line(s, &up("a", s as i64))).unwrap());
    }
    std::fs::write(dir.join("queue.log"), log).unwrap();
    std::fs::write(dir.join("acked"), "3").unwrap();
    let mut o = Outbox::open(&dir, &bounded(100, OverflowPolicy::DropOldest)).unwrap();
    assert_eq!(values(&o.next_batch(100)), vec![4, 5]);
    assert!(!dir.join("acked").exists());
    o.push(up("a", 6));
    assert!(o.next_batch(1)[0].0 > 5);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_fsync_policy_keeps_everything_across_reopen() {
    for fsync in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval,
        FsyncPolicy::Never,
    ] {
        let dir = temp(&format!("fsync-{fsync:?}"));
        let config = QueueConfig {
            fsync,
            fsync_interval_ms: 1,
            ..QueueConfig::default()
        };
        let mut o = Outbox::open(&dir, &config).unwrap();
        for i in 0..50 {
            o.push(up("a", i));
            o.flush().unwrap();
        }
        let b = o.next_batch(10);
        o.ack(b.iter().map(|(s, _)| *s));
        std::mem::forget(o);
        let mut o = Outbox::open(&dir, &config).unwrap();
        assert_eq!(
            values(&o.next_batch(100)),
            (10..50).collect::<Vec<_>>(),
            "{fsync:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
