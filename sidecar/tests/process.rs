//! The sidecar binary as Kubernetes runs it: SIGTERM must end it within a bound whatever the
//! scripts do (security review, issue 17 item 18: a stuck Lua call kept it alive 25 s and more).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgeway_testkit::client::{basic, http};

#[tokio::test]
async fn sigterm_ends_the_process_while_a_lua_call_is_stuck_in_c() {
    let dir = edgeway_testkit::temp_dir("sigterm");
    // About 20 s of backtracking in Lua's C pattern matcher, where no hook can stop it.
    std::fs::write(
        dir.join("stuck.lua"),
        "services.Stuck = function() return 200, ('a'):rep(500):find(('.-'):rep(3) .. 'b') end\n",
    )
    .unwrap();
    std::fs::write(dir.join("users"), "u:p\n").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(
        dir.join("sidecar.yaml"),
        format!(
            "server:\n  listen: 127.0.0.1:{port}\n  plaintext: true\nadmin:\n  listen: 127.0.0.1:0\n\
             auth:\n  methods: [basic]\n  basic:\n    usersFile: {}\n\
             lua:\n  templates:\n    - name: stuck\n      file: {}\n  things:\n    - name: S1\n      template: stuck\n",
            dir.join("users").display(),
            dir.join("stuck.lua").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgeway-sidecar"))
        .arg("--config")
        .arg(dir.join("sidecar.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    edgeway_testkit::eventually("the sidecar to listen", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let auth = basic("u", "p");
    let call = tokio::spawn(async move {
        http(
            addr,
            "POST",
            "/Thingworx/Things/S1/Services/Stuck",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            "{}",
        )
        .await
    });
    // Let the call get stuck in the pattern, then stop the process as Kubernetes does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!call.is_finished(), "the call was meant to be stuck");
    let start = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(10) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    call.abort();
    assert!(
        exited.is_some(),
        "still running {:?} after SIGTERM",
        start.elapsed()
    );
}
