use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A fake proxy on loopback that reads the CONNECT request and answers `answer`, repeated
/// `times` times.
async fn proxy_answering(answer: &'static [u8], times: usize) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        for _ in 0..times {
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
    });
    addr
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_bound() {
    // A hostile proxy: a status line, then header lines without end.
    let addr = proxy_answering(
        b"HTTP/1.1 200 OK\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n",
        10_000,
    )
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let e = connect_through(&mut s, "p:1", "t:443", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProxyError::Malformed { reason, .. } if reason.contains("longer than 8192")),
        "{e}"
    );
}

#[tokio::test]
async fn a_refusal_names_the_proxy_status() {
    let addr = proxy_answering(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", 1).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let e = connect_through(&mut s, "p:1", "t:443", None)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("407 Proxy Authentication Required"),
        "{e}"
    );
    let addr = proxy_answering(b"SSH-2.0-OpenSSH\r\n\r\n", 1).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let e = connect_through(&mut s, "p:1", "t:443", None)
        .await
        .unwrap_err();
    assert!(matches!(e, ProxyError::Malformed { .. }), "{e}");
}
