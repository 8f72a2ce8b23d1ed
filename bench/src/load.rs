//! HTTP/1.1 over TLS load generator: `connections` concurrent clients for `duration` seconds on a
//! current-thread runtime (pin it to one core with `taskset`). Keep-alive by default; `--close`
//! opens a new TCP connection and TLS handshake for every request: a full one, or with
//! `--resume` one resumed from the server's last session ticket. `--no-verify` spares the
//! client the server's signature checks when the server's handshakes are what is measured.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::util::{client_config, percentile};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Server address.
    #[arg(long)]
    addr: SocketAddr,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request body (sent with Content-Type: application/json).
    #[arg(long)]
    body: Option<String>,
    /// Extra header, "Name: value"; repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// A new connection (full TLS handshake) per request.
    #[arg(long)]
    close: bool,
    /// With --close: resume TLS sessions (tickets) instead of full handshakes.
    #[arg(long, requires = "close")]
    resume: bool,
    /// Do not verify the server's certificate and handshake signature.
    #[arg(long)]
    no_verify: bool,
    /// CA bundle the server certificate must chain to.
    #[arg(long)]
    ca: PathBuf,
    /// Client certificate (mTLS).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Client key (mTLS).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Server name to verify.
    #[arg(long, default_value = "localhost")]
    server_name: String,
}

struct Stats {
    lat_us: Vec<u64>,
    ok: u64,
    non2xx: u64,
    errors: u64,
    /// Measured handshakes that resumed a session.
    resumed: u64,
    /// Measured handshakes.
    handshakes: u64,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(a))
}

async fn run_async(a: Args) -> anyhow::Result<()> {
    let cert = a.cert.as_deref().zip(a.key.as_deref());
    let tls = TlsConnector::from(client_config(&a.ca, cert, a.resume, !a.no_verify)?);
    let name = ServerName::try_from(a.server_name.clone())?;
    let a = Arc::new(a);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(a.warmup);
    let end = measure_from + Duration::from_secs(a.duration);
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        let (a, tls, name) = (a.clone(), tls.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            client(a, tls, name, measure_from, end).await
        }));
    }
    let mut all = Stats {
        lat_us: Vec::new(),
        ok: 0,
        non2xx: 0,
        errors: 0,
        resumed: 0,
        handshakes: 0,
    };
    for t in tasks {
        let s = t.await?;
        all.lat_us.extend(s.lat_us);
        all.ok += s.ok;
        all.non2xx += s.non2xx;
        all.errors += s.errors;
        all.resumed += s.resumed;
        all.handshakes += s.handshakes;
    }
    all.lat_us.sort_unstable();
    let secs = a.duration as f64;
    let out = serde_json::json!({
        "tool": "edgeway-bench load",
        "connections": a.connections,
        "mode": match (a.close, a.resume) {
            (false, _) => "keep-alive",
            (true, false) => "new TLS connection per request",
            (true, true) => "new TLS connection per request, session resumed",
        },
        "handshakes": all.handshakes,
        "resumed": all.resumed,
        "verify": !a.no_verify,
        "mtls": a.cert.is_some(),
        "seconds": secs,
        "requests": all.ok,
        "rps": (all.ok as f64 / secs).round(),
        "p50_ms": percentile(&all.lat_us, 50.0) as f64 / 1000.0,
        "p99_ms": percentile(&all.lat_us, 99.0) as f64 / 1000.0,
        "max_ms": all.lat_us.last().copied().unwrap_or(0) as f64 / 1000.0,
        "non2xx": all.non2xx,
        "errors": all.errors,
    });
    println!("{out}");
    if all.ok == 0 {
        anyhow::bail!("no successful request");
    }
    Ok(())
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Connects; also says whether the TLS session was resumed.
async fn connect(
    a: &Args,
    tls: &TlsConnector,
    name: &ServerName<'static>,
) -> anyhow::Result<(Sender, bool)> {
    let tcp = TcpStream::connect(a.addr).await.context("tcp connect")?;
    tcp.set_nodelay(true)?;
    let stream = tls.connect(name.clone(), tcp).await.context("tls")?;
    let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((sender, resumed))
}

fn request(a: &Args) -> anyhow::Result<http::Request<Full<Bytes>>> {
    let mut b = http::Request::builder()
        .method(a.method.as_str())
        .uri(a.path.as_str())
        .header(http::header::HOST, "localhost");
    for h in &a.headers {
        let (k, v) = h.split_once(':').context("header must be Name: value")?;
        b = b.header(k.trim(), v.trim());
    }
    if a.close {
        b = b.header(http::header::CONNECTION, "close");
    }
    let body = match &a.body {
        Some(s) => {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(s.clone())
        }
        None => Bytes::new(),
    };
    Ok(b.body(Full::new(body))?)
}

async fn client(
    a: Arc<Args>,
    tls: TlsConnector,
    name: ServerName<'static>,
    measure_from: Instant,
    end: Instant,
) -> Stats {
    let mut s = Stats {
        lat_us: Vec::with_capacity(1 << 12),
        ok: 0,
        non2xx: 0,
        errors: 0,
        resumed: 0,
        handshakes: 0,
    };
    let mut sender: Option<Sender> = None;
    while Instant::now() < end {
        let t0 = Instant::now();
        let measuring = t0 >= measure_from;
        let result = async {
            let mut tx = match sender.take() {
                Some(tx) if !a.close && !tx.is_closed() => tx,
                _ => {
                    let (tx, resumed) = connect(&a, &tls, &name).await?;
                    if measuring {
                        s.handshakes += 1;
                        s.resumed += u64::from(resumed);
                    }
                    tx
                }
            };
            tx.ready().await?;
            let resp = tx.send_request(request(&a)?).await?;
            let status = resp.status();
            resp.into_body().collect().await?;
            if !a.close {
                sender = Some(tx);
            }
            anyhow::Ok(status)
        }
        .await;
        match result {
            Ok(st) if measuring => {
                if st.is_success() {
                    s.ok += 1;
                    if s.lat_us.len() < 20_000_000 {
                        s.lat_us.push(t0.elapsed().as_micros() as u64);
                    }
                } else {
                    s.non2xx += 1;
                }
            }
            Ok(_) => {}
            Err(_) => {
                if measuring {
                    s.errors += 1;
                }
                sender = None;
                // Bounded back-off so a refusing server does not turn this into a busy loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    s
}
