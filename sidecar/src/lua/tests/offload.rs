//! Lua inline on the async worker, and moved off it when a call runs long (see `offload`).
//! These run on a one-worker runtime: while Lua holds the only worker, nothing else runs
//! unless the call has moved off it.

use super::*;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

const SCRIPT: &str = r#"
services.Short = function(me, headers, query, data)
    local t = {}
    for k, v in pairs(data) do t[#t + 1] = k .. "=" .. tostring(v) end
    return 200, #t
end
services.Light = function(me, headers, query, data)
    local parts = {}
    for _, word in ipairs({ "a", "b", "c" }) do table.insert(parts, string.upper(word)) end
    local s = table.concat(parts, ",")
    return 200, string.format("%s %d %s", s, #s, tostring(s:find(",", 1, true)))
end
services.Spin = function(me, headers, query, data)
    local start = os.clock()
    while os.clock() - start < data.seconds do end
    return 200, "spun"
end
services.Keep = function(me, headers, query, data)
    -- Live values in this frame's registers while the hook moves it off the worker.
    local rows, key = {}, "k" .. tostring(data.n)
    for i = 1, data.n do rows[i] = { i, tostring(i) } end
    local start = os.clock()
    while os.clock() - start < 0.02 do end
    local junk = {}
    for i = 1, 20000 do junk[i % 100 + 1] = { i } end
    collectgarbage("collect")
    local sum = 0
    for i = 1, data.n do
        local row = rows[i]
        if tostring(row[1]) ~= row[2] then return 500, "row " .. i .. " changed" end
        sum = sum + row[1]
    end
    return 200, key .. "=" .. sum
end
services.LongInput = function(me, headers, query, data)
    local s = "%u"
    for _ = 1, 12 do s = s .. s end
    local calls = {
        date = function() return #os.date(s) > 0 end,
        upper = function() return #s:upper() end,
        unpack = function() return select('#', table.unpack({}, 1, 5000)) end,
    }
    return 200, calls[data.call]()
end
services.Coerce = function() return 200, ("10" + 1) * ("3" * "4") end
services.StringArith = function()
    local t = setmetatable({}, { __add = function(a, b) return 41 end })
    return 200, "1" + t
end
services.LongPlain = function()
    local s = ("ab"):rep(64)
    return 200, string.match(s, ("a"):rep(65)) == nil
end
services.Hold = function()
    -- 8 MiB by doubling: a few instructions, then any C loop over it would be milliseconds.
    local s = "%u"
    for _ = 1, 22 do s = s .. s end
    BIG = s
    return 200, #BIG
end
services.Len = function() return 200, utf8.len(BIG) end
services.Drop = function() BIG = nil return 200, "dropped" end
services.StringMeta = function() return 200, tostring(getmetatable("")) end
services.Pattern = function() return 200, (string.match("key=value", "^(%w+)=")) end
services.Generator = function()
    local gen = coroutine.wrap(function() for i = 1, 10 do coroutine.yield(i) end end)
    local sum = 0
    for _ = 1, 10 do sum = sum + gen() end
    local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
    local _, first = coroutine.resume(co, 1)
    local _, second = coroutine.resume(co, 21)
    return 200, sum + first + second
end
services.TopYield = function() coroutine.yield(1) return 200, "unreachable" end
services.Sorted = function()
    local t = { 3, 1, 2 }
    table.sort(t, function(a, b) return a > b end)
    return 200, table.concat(t, "")
end
"#;

/// Each observed call: its kind and how it ended.
type Seen = Arc<Mutex<Vec<(String, Ended)>>>;

/// Loads the script and records, per call, whether it was moved off the worker.
fn observed() -> (Arc<Things>, Seen) {
    let limits = LuaLimits {
        deadline: Duration::from_secs(10),
        ..LuaLimits::default()
    };
    let things = load_with("offload.lua", SCRIPT, limits).expect("template loads");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    things.set_observer(Arc::new(move |kind, _took, ended| {
        sink.lock().unwrap().push((kind.to_string(), ended));
    }));
    (Arc::new(things), seen)
}

/// Calls `service` from a task on the runtime's worker, as the HTTP server does.
async fn call_on_worker(things: &Arc<Things>, service: &str, p: Json) -> ServiceResult {
    let things = Arc::clone(things);
    let service = service.to_string();
    tokio::spawn(async move { call(&things, &service, p).await })
        .await
        .expect("task")
        .unwrap_or_else(|e| panic!("service failed: {e}"))
}

fn last_offloaded(seen: &Mutex<Vec<(String, Ended)>>) -> bool {
    let seen = seen.lock().unwrap();
    let (kind, ended) = seen.last().expect("an observed call");
    assert_eq!(kind, "service");
    assert!(ended.ok, "{ended:?}");
    ended.offloaded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn short_calls_run_inline() {
    let (things, seen) = observed();
    let r = call_on_worker(&things, "Short", json!({"a": 1, "b": true})).await;
    assert_eq!(r.value, json!(2));
    assert!(!last_offloaded(&seen), "Short left the worker");
    let r = call_on_worker(&things, "Light", json!({})).await;
    assert_eq!(r.value, json!("A,B,C 5 2"));
    assert!(!last_offloaded(&seen), "Light left the worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn long_calls_leave_the_worker_so_other_tasks_run() {
    let (things, seen) = observed();
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let (during, r) = {
        let things = Arc::clone(&things);
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            let before = ticks.load(Ordering::Relaxed);
            let r = call(&things, "Spin", json!({"seconds": 0.3})).await;
            (ticks.load(Ordering::Relaxed) - before, r)
        })
        .await
        .expect("task")
    };
    ticker.abort();
    assert_eq!(r.expect("Spin").value, json!("spun"));
    assert!(last_offloaded(&seen), "Spin stayed on the worker");
    // Had Spin kept the only worker, the ticker could not have run at all during it.
    assert!(
        during >= 3,
        "ticker ran {during} times during a 300 ms call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_call_moved_off_the_worker_keeps_its_live_values() {
    let (things, seen) = observed();
    // A collection after the move must still see the frame's tables, or they would be freed.
    for _ in 0..3 {
        let r = call_on_worker(&things, "Keep", json!({"n": 2000})).await;
        assert_eq!((r.status, r.value), (200, json!("k2000=2001000")));
        assert!(last_offloaded(&seen), "Keep stayed on the worker");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn pattern_matching_and_comparators_leave_the_worker() {
    let (things, seen) = observed();
    let r = call_on_worker(&things, "Pattern", json!({})).await;
    assert_eq!(r.value, json!("key"));
    assert!(last_offloaded(&seen), "a backtracking pattern ran inline");
    let r = call_on_worker(&things, "Sorted", json!({})).await;
    assert_eq!(r.value, json!("321"));
    assert!(last_offloaded(&seen), "a sort comparator ran inline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn library_calls_on_long_inputs_leave_the_worker() {
    let (things, seen) = observed();
    for (call, want) in [
        ("date", json!(true)),
        ("upper", json!(8192)),
        ("unpack", json!(5000)),
    ] {
        let r = call_on_worker(&things, "LongInput", json!({ "call": call })).await;
        assert_eq!(r.value, want, "{call}");
        assert!(last_offloaded(&seen), "{call} on a long input ran inline");
    }
    // Matching without magic characters still costs subject × pattern length.
    let r = call_on_worker(&things, "LongPlain", json!({})).await;
    assert_eq!(r.value, json!(true));
    assert!(last_offloaded(&seen), "a long plain pattern ran inline");
    // Strings' arithmetic calls a table's metamethod from C; plain coercion stays inline.
    let r = call_on_worker(&things, "StringArith", json!({})).await;
    assert_eq!(r.value, json!(41));
    assert!(last_offloaded(&seen), "a metamethod ran from C inline");
    let r = call_on_worker(&things, "Coerce", json!({})).await;
    assert_eq!(r.value, json!(132));
    assert!(!last_offloaded(&seen), "string coercion left the worker");
    // Scripts cannot reach the strings' metatable to make `tostring` run Lua from C.
    let r = call_on_worker(&things, "StringMeta", json!({})).await;
    assert_eq!(r.value, json!("false"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_vm_holding_big_values_runs_its_calls_off_the_worker() {
    let (things, seen) = observed();
    let r = call_on_worker(&things, "Hold", json!({})).await;
    assert_eq!(r.value, json!(8 << 20));
    // A short call, but its one C loop goes over 8 MiB.
    let r = call_on_worker(&things, "Len", json!({})).await;
    assert_eq!(r.value, json!(8 << 20));
    assert!(last_offloaded(&seen), "a call over 8 MiB ran inline");
    // The freed 8 MiB is collected within a bounded number of calls (the sandbox's
    // collectgarbage does nothing, and short calls barely drive the collector).
    call_on_worker(&things, "Drop", json!({})).await;
    let mut inline_after = None;
    for n in 0..70 {
        let r = call_on_worker(&things, "Short", json!({})).await;
        assert_eq!(r.value, json!(0));
        if !last_offloaded(&seen) {
            inline_after = Some(n);
            break;
        }
    }
    assert!(
        inline_after.is_some(),
        "calls stayed off the worker once memory was freed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn script_coroutines_keep_their_meaning() {
    let (things, seen) = observed();
    // 55 from the generator, 2 from the first resume, 42 from the second.
    let r = call_on_worker(&things, "Generator", json!({})).await;
    assert_eq!(r.value, json!(99));
    assert!(last_offloaded(&seen), "coroutines ran inline");
    // The call's own thread is not the script's to yield.
    let err = call(&things, "TopYield", json!({})).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("attempt to yield from outside a coroutine"),
        "{err}"
    );
    let r = call_on_worker(&things, "Short", json!({})).await;
    assert_eq!(r.value, json!(0));
}

/// The same script on a current-thread runtime, where calls go to the blocking pool.
#[tokio::test]
async fn without_a_multi_thread_runtime_calls_use_the_blocking_pool() {
    let (things, seen) = observed();
    for (service, p, want) in [
        ("Spin", json!({"seconds": 0.05}), json!("spun")),
        ("Generator", json!({}), json!(99)),
        ("Sorted", json!({}), json!("321")),
    ] {
        let r = call(&things, service, p).await.expect(service);
        assert_eq!(r.value, want, "{service}");
        assert!(!last_offloaded(&seen), "{service} counted as offloaded");
    }
    let err = call(&things, "TopYield", json!({})).await.unwrap_err();
    assert!(err.to_string().contains("outside a coroutine"), "{err}");
}
