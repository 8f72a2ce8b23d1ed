//! The ceiling of the tunnel's transport: tokio-tungstenite over tokio-rustls on 127.0.0.1, the
//! client sending exactly the frames the tunnel sends for `UpdateSubscribedPropertyValues`
//! (encoded once up front with the sidecar's own codec) with the tunnel's window of messages in
//! flight (`maxInFlight`, default 1024), the server echoing every frame back unchanged. No codec,
//! outbox, registry or acknowledgement logic runs per message: what is left is TLS + websocket
//! framing. Writes are batched like the tunnel's: the client writes every message the window
//! allows with one flush, the server flushes its echoes when no further frame is ready (the
//! platform's writer does the same with its replies). `--flush-each` flushes every message on
//! both sides, as the tunnel and platform did before.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use edgeway_protocol::vtq::PropertyUpdate;
use edgeway_protocol::{split, Message, Primitive};
use futures_util::{FutureExt, SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::util::{client_config, process_cpu_secs, server_config};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Directory with ca.crt, server.crt, server.key.
    #[arg(long)]
    certs: PathBuf,
    /// Rows per UpdateSubscribedPropertyValues message (500: one thing; 1: one device each).
    #[arg(long, default_value_t = 500)]
    rows: usize,
    /// Messages in flight (the tunnel's maxInFlight default).
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// Flush after every message on both sides (the pre-batching behaviour).
    #[arg(long)]
    flush_each: bool,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Warm-up seconds.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Worker threads of the runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.workers)
        .enable_all()
        .build()?;
    rt.block_on(run_async(a))
}

async fn run_async(a: Args) -> anyhow::Result<()> {
    let certs = a.certs.canonicalize().context("--certs")?;
    // The bytes the tunnel would send for `rows` updates of one thing (chunkSize 8192).
    let t = crate::util::now_ms();
    let ups: Vec<PropertyUpdate> = (0..a.rows)
        .map(|i| PropertyUpdate::good("n", Primitive::Number(i as f64 + 0.5), t))
        .collect();
    let msg = Message::update_subscribed_property_values(7, "dev-12345", &ups).with_session(42);
    let frames: Vec<bytes::Bytes> = split(&msg, 8192)?
        .into_iter()
        .map(bytes::Bytes::from)
        .collect();
    let per_msg = frames.len() as u64;
    let msg_bytes: usize = frames.iter().map(|f| f.len()).sum();

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(server_config(
        &certs.join("server.crt"),
        &certs.join("server.key"),
    )?);
    let flush_each = a.flush_each;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let tls = acceptor.accept(tcp).await?;
        let mut ws = tokio_tungstenite::accept_async(tls).await?;
        let mut next = ws.next().await;
        let mut burst = 0;
        while let Some(m) = next {
            match m? {
                m @ WsMessage::Binary(_) => ws.feed(m).await?,
                WsMessage::Close(_) => break,
                _ => {}
            }
            burst += 1;
            // Echo a burst with one flush, bounded like the platform's writer.
            let ready = if flush_each || burst >= 256 {
                None
            } else {
                ws.next().now_or_never()
            };
            next = match ready {
                Some(n) => n,
                None => {
                    ws.flush().await?;
                    burst = 0;
                    ws.next().await
                }
            };
        }
        anyhow::Ok(())
    });

    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = TlsConnector::from(client_config(&certs.join("ca.crt"), None, true, true)?)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let url = format!("wss://localhost:{}/Thingworx/WS", addr.port());
    let (ws, _) = tokio_tungstenite::client_async(url, tls).await?;
    let (mut sink, mut stream) = ws.split();

    let window = Arc::new(Semaphore::new(a.window));
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let writer = {
        let (window, stop, frames) = (window.clone(), stop.clone(), frames.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(p) =
                    tokio::time::timeout(Duration::from_millis(100), window.acquire()).await
                else {
                    continue;
                };
                p?.forget();
                // Every message the window allows now, with one flush (as the tunnel sends).
                let mut n = 1;
                if !flush_each {
                    let more = window.available_permits();
                    if more > 0 {
                        if let Ok(p) = window.try_acquire_many(more as u32) {
                            p.forget();
                            n += more;
                        }
                    }
                }
                for _ in 0..n {
                    for f in &frames {
                        sink.feed(WsMessage::Binary(f.clone())).await?;
                    }
                }
                sink.flush().await?;
            }
            let _ = sink.send(WsMessage::Close(None)).await;
            anyhow::Ok(())
        })
    };
    let reader = {
        let (window, echoed) = (window.clone(), echoed.clone());
        tokio::spawn(async move {
            let mut frames_seen = 0u64;
            while let Some(m) = stream.next().await {
                if let Ok(WsMessage::Binary(_)) = m {
                    frames_seen += 1;
                    if frames_seen.is_multiple_of(per_msg) {
                        echoed.fetch_add(1, Ordering::Relaxed);
                        window.add_permits(1);
                    }
                } else if m.is_err() {
                    break;
                }
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    let (m0, cpu0, t0) = (
        echoed.load(Ordering::Relaxed),
        process_cpu_secs(),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(a.duration)).await;
    let (m1, cpu1, secs) = (
        echoed.load(Ordering::Relaxed),
        process_cpu_secs(),
        t0.elapsed().as_secs_f64(),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    server.abort();
    let msgs = (m1 - m0) as f64 / secs;
    let out = serde_json::json!({
        "tool": "edgeway-bench ws-ceiling",
        "rows_per_message": a.rows,
        "frames_per_message": per_msg,
        "bytes_per_message": msg_bytes,
        "window": a.window,
        "flush_each": a.flush_each,
        "workers": a.workers,
        "seconds": secs,
        "messages_per_s": msgs.round(),
        "updates_per_s": (msgs * a.rows as f64).round(),
        "mbytes_per_s_each_way": (msgs * msg_bytes as f64 / 1e6 * 100.0).round() / 100.0,
        "cpu_cores": (cpu1 - cpu0) / secs,
    });
    println!("{out}");
    Ok(())
}
