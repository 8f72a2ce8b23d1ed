use super::*;

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
        let mut o = Outbox::open(&dir, &bounded(5000, OverflowPolicy::DropOldest)).unwrap();
        for i in 0..2000 {
            o.push(up("a", i));
        }
        let b = o.next_batch(1900);
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
    let mut o = Outbox::open(&dir, &bounded(5000, OverflowPolicy::DropOldest)).unwrap();
    let rest = values(&o.next_batch(10_000));
    assert_eq!(rest, (1900..2000).collect::<Vec<_>>());
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
