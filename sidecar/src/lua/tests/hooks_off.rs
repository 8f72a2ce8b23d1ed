//! Lua runs some code with hooks off: the message handler of an error raised in the budget
//! hook, and the closing values of a thread such an error ended. Each path, as a hostile
//! template would take it, must still be stopped by the deadline (security review, issue 17,
//! items 1 and 2). A regression spins a thread for good, so a case that does not end within
//! its bound fails the whole test binary at once instead of hanging it.

use super::*;
use std::io::Write;

const HOSTILE: &str = r#"
local function spin() while true do end end
local loose = setmetatable({}, { __close = spin })
local saved, saved_outer

services.XpSpin = function() xpcall(spin, spin) return 200, "ended" end
services.XpError = function() xpcall(error, spin) return 200, "ended" end
services.XpNested = function()
    xpcall(function() xpcall(spin, spin) end, spin)
    return 200, "ended"
end

-- A generic `for` makes its fourth value a to-be-closed variable without `<close>` syntax.
services.ArmCoroutine = function()
    saved = coroutine.create(function()
        for _ in spin, nil, nil, loose do end
    end)
    coroutine.resume(saved)
end
services.CloseCoroutine = function()
    local ok, err = coroutine.close(saved)
    return 200, tostring(ok) .. ": " .. tostring(err)
end

services.ArmWrapped = function()
    local f = coroutine.wrap(function()
        saved = coroutine.running()
        for _ in spin, nil, nil, loose do end
    end)
    f()
end

services.ArmCallThread = function()
    saved_outer = coroutine.running()
    for _ in spin, nil, nil, loose do end
end
services.CloseCallThread = function()
    local ok, err = coroutine.close(saved_outer)
    return 200, tostring(ok) .. ": " .. tostring(err)
end

services.Ok = function() return 200, "ok" end
"#;

fn limits() -> LuaLimits {
    LuaLimits {
        instructions: u64::MAX,
        deadline: Duration::from_millis(200),
        ..LuaLimits::default()
    }
}

/// Runs a service call; exits the test process if it has not ended within `bound`.
async fn bounded(
    things: &Things,
    service: &str,
    bound: Duration,
) -> Result<ServiceResult, ThingError> {
    match tokio::time::timeout(bound, call(things, service, json!({}))).await {
        Ok(r) => r,
        Err(_) => {
            // Straight to stderr: the harness's output capture would lose it at exit.
            let _ = writeln!(
                std::io::stderr(),
                "{service} still running after {bound:?}: a sandbox limit was bypassed"
            );
            std::process::exit(101);
        }
    }
}

const BOUND: Duration = Duration::from_secs(10);

async fn xpcall_handlers_are_bounded() {
    let things = load_with("xp.lua", HOSTILE, limits()).unwrap();
    for service in ["XpSpin", "XpError", "XpNested"] {
        let start = Instant::now();
        let err = bounded(&things, service, BOUND).await.unwrap_err();
        assert!(
            matches!(err, ThingError::Timeout { .. }),
            "{service}: {err:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{service}: {:?}",
            start.elapsed()
        );
        assert_still_ok(&things, service).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn xpcall_handler_cannot_outrun_the_deadline() {
    xpcall_handlers_are_bounded().await;
}

#[tokio::test]
async fn xpcall_handler_cannot_outrun_the_deadline_on_the_blocking_pool() {
    xpcall_handlers_are_bounded().await;
}

async fn stopped_threads_are_not_closed() {
    let things = load_with("close.lua", HOSTILE, limits()).unwrap();
    for (arm, close) in [
        ("ArmCoroutine", "CloseCoroutine"),
        ("ArmWrapped", "CloseCoroutine"),
        ("ArmCallThread", "CloseCallThread"),
    ] {
        let err = bounded(&things, arm, BOUND).await.unwrap_err();
        assert!(matches!(err, ThingError::Timeout { .. }), "{arm}: {err:?}");
        let start = Instant::now();
        let r = bounded(&things, close, BOUND).await.expect(close);
        assert_eq!(
            r.value,
            json!("false: cannot close a coroutine stopped by the sandbox's limits (its closing values are dropped)"),
            "{arm}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{close}: {:?}",
            start.elapsed()
        );
        assert_still_ok(&things, close).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn closing_values_of_stopped_threads_never_run_unbounded() {
    stopped_threads_are_not_closed().await;
}

#[tokio::test]
async fn closing_values_of_stopped_threads_never_run_unbounded_on_the_blocking_pool() {
    stopped_threads_are_not_closed().await;
}

/// Security review, issue 17 item 19: a call that crosses its deadline must not succeed. (The
/// pattern matcher now stops at the deadline itself; see `a_backtracking_pattern_stops_at_the_
/// deadline`. The check after the call still covers C functions that cannot be stopped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_call_that_ends_past_its_deadline_fails() {
    let src = r#"
services.Backtrack = function()
    return 200, ("a"):rep(220):find((".-"):rep(3) .. "b")
end
services.Ok = function() return 200, "ok" end
"#;
    let limits = LuaLimits {
        instructions: u64::MAX,
        deadline: Duration::from_millis(50),
        ..LuaLimits::default()
    };
    let things = load_with("backtrack.lua", src, limits).unwrap();
    let start = Instant::now();
    let err = bounded(&things, "Backtrack", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() > Duration::from_millis(50),
        "the pattern should outlast the deadline: {:?}",
        start.elapsed()
    );
    assert!(matches!(err, ThingError::Timeout { .. }), "{err:?}");
    assert_still_ok(&things, "Backtrack").await;
}
