//! permessage-deflate (RFC 7692) on the AlwaysOn listener, checked byte by byte: a hand-made
//! TLS client offers it as edge SDKs do, sends frames it deflated itself (RSV1 set, the
//! `00 00 ff ff` tail removed) and inflates the platform's; an inflation bomb stops at
//! `websocket.maxMessageBytes` (issue 18 item 8).

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use common::*;
use edgeway_protocol::{split, Message, Reassembler};
use edgeway_testkit::client::{get, http};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;

/// Raw deflate of one message with a sync flush, minus the flush's `00 00 ff ff` (RFC 7692
/// section 7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    deflate_at(data, flate2::Compression::fast())
}

fn deflate_at(data: &[u8], level: flate2::Compression) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), level);
    e.write_all(data).unwrap();
    e.flush().unwrap();
    let mut out = e.get_ref().clone();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "sync flush tail");
    out.truncate(out.len() - 4);
    out
}

/// Inflates one message: the removed tail is put back first.
fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = flate2::write::DeflateDecoder::new(Vec::new());
    d.write_all(data).unwrap();
    d.write_all(&[0, 0, 0xff, 0xff]).unwrap();
    d.flush().unwrap();
    d.get_ref().clone()
}

/// One masked client frame (FIN set).
fn frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x5a, 0x17, 0xc3, 0x08];
    let mut f = vec![0x80 | if rsv1 { 0x40 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A websocket client that is nothing but bytes over TLS.
struct Raw {
    tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
    /// The 101 response head.
    head: String,
}

/// A server frame as read off the wire.
struct Got {
    opcode: u8,
    rsv1: bool,
    payload: Vec<u8>,
}

impl Got {
    /// The message bytes: inflated when RSV1 says the frame is compressed.
    fn message(&self) -> Vec<u8> {
        if self.rsv1 {
            inflate(&self.payload)
        } else {
            self.payload.clone()
        }
    }

    fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl Raw {
    /// Upgrades at `/Thingworx/WS`, offering `extensions` when given.
    async fn open(
        addr: std::net::SocketAddr,
        cfg: Arc<rustls::ClientConfig>,
        extensions: Option<&str>,
    ) -> Raw {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = TlsConnector::from(cfg)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let offer = extensions
            .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "GET /Thingworx/WS HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        buf.drain(..end);
        assert!(head.starts_with("http/1.1 101"), "{head}");
        Raw { tls, buf, head }
    }

    async fn send(&mut self, msg: &Message, compress: bool) {
        for f in split(msg, 8192).unwrap() {
            let payload = if compress { deflate(&f) } else { f };
            self.send_frame(OP_BINARY, compress, &payload).await;
        }
    }

    async fn send_frame(&mut self, opcode: u8, rsv1: bool, payload: &[u8]) {
        self.tls
            .write_all(&frame(opcode, rsv1, payload))
            .await
            .unwrap();
    }

    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = [0u8; 16 << 10];
            match tokio::time::timeout(WAIT, self.tls.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return false,
                Ok(Ok(k)) => self.buf.extend_from_slice(&chunk[..k]),
                Err(_) => panic!("nothing from the platform within {WAIT:?}"),
            }
        }
        true
    }

    /// The next server frame (unmasked), or `None` at the end of the connection.
    async fn next(&mut self) -> Option<Got> {
        if !self.fill(2).await {
            return None;
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        let (len, at) = match b1 & 0x7f {
            126 => {
                self.fill(4).await;
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                self.fill(10).await;
                let b: [u8; 8] = self.buf[2..10].try_into().unwrap();
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        if !self.fill(at + len).await {
            return None;
        }
        let payload = self.buf[at..at + len].to_vec();
        self.buf.drain(..at + len);
        Some(Got {
            opcode: b0 & 0x0f,
            rsv1: b0 & 0x40 != 0,
            payload,
        })
    }

    /// The next AlwaysOn message, with the wire frame it came in.
    async fn recv(&mut self, rx: &mut Reassembler) -> (Message, Got) {
        loop {
            let got = self.next().await.expect("connection open");
            if got.opcode != OP_BINARY {
                continue;
            }
            if let Some(m) = rx.push(&got.message(), Instant::now()).unwrap() {
                return (m, got);
            }
        }
    }

    /// AUTH (compressed or not); returns the session id.
    async fn auth(&mut self, rx: &mut Reassembler, compress: bool) -> u32 {
        self.send(&Message::auth(1, APP_KEY), compress).await;
        let (m, _) = self.recv(rx).await;
        let Message::Response(r) = m else {
            panic!("{m:?}")
        };
        assert!(r.status.is_success(), "{r:?}");
        r.header.session_id
    }
}

#[tokio::test]
async fn an_offered_deflate_is_agreed_and_compressed_frames_flow_both_ways() {
    let s = Setup::new("deflate-on");
    let p = s.start("").await;
    // What the C SDK's websocket layer and browsers offer.
    let mut edge = Raw::open(
        p.alwayson_addr,
        s.client(),
        Some("permessage-deflate; client_max_window_bits"),
    )
    .await;
    assert!(
        edge.head
            .contains("sec-websocket-extensions: permessage-deflate"),
        "{}",
        edge.head
    );
    let mut rx = Reassembler::default();
    // AUTH and BIND compressed: the platform inflates them.
    let sid = edge.auth(&mut rx, true).await;
    edge.send(&Message::bind(2, None, &["dev-z"]).with_session(sid), true)
        .await;
    let (bound, _) = edge.recv(&mut rx).await;
    assert!(
        matches!(&bound, Message::Response(r) if r.status.is_success()),
        "{bound:?}"
    );
    let gws = get(p.rest_addr, "/api/gateways").await.json();
    assert_eq!(gws[0]["compressed"], true, "{gws}");

    // A write of a long value reaches the edge compressed: the platform deflates too.
    let long = "temperature=21.5;".repeat(64);
    let rest = p.rest_addr;
    let body = serde_json::json!({ "value": long }).to_string();
    tokio::spawn(
        async move { http(rest, "PUT", "/api/things/dev-z/properties/s", &[], &body).await },
    );
    let (write, got) = loop {
        let (m, got) = edge.recv(&mut rx).await;
        if m.encode().len() > long.len() {
            break (m, got);
        }
    };
    assert!(
        got.rsv1,
        "a {} byte message sent uncompressed",
        write.encode().len()
    );
    assert!(
        got.payload.len() * 4 < write.encode().len(),
        "{} bytes on the wire for {}",
        got.payload.len(),
        write.encode().len()
    );
    assert!(
        format!("{write:?}").contains("temperature=21.5"),
        "{write:?}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn a_platform_without_compression_declines_the_offer_and_refuses_compressed_frames() {
    let s = Setup::new("deflate-off");
    let p = s.start("websocket:\n  compression: false\n").await;
    let mut edge = Raw::open(p.alwayson_addr, s.client(), Some("permessage-deflate")).await;
    assert!(
        !edge.head.contains("sec-websocket-extensions"),
        "{}",
        edge.head
    );
    // Uncompressed frames work as before.
    let mut rx = Reassembler::default();
    edge.auth(&mut rx, false).await;
    // A frame with RSV1 set was not agreed: a protocol error (1002), then the end.
    edge.send(&Message::bind(2, None, &["dev-q"]), true).await;
    let mut code = None;
    while let Some(f) = edge.next().await {
        code = code.or(f.close_code());
    }
    assert_eq!(code, Some(1002));
    p.shutdown().await;
}

#[tokio::test]
async fn an_inflation_bomb_is_cut_at_the_message_limit() {
    let s = Setup::new("deflate-bomb");
    let p = s.start("websocket:\n  maxMessageBytes: 65536\n").await;
    let mut edge = Raw::open(p.alwayson_addr, s.client(), Some("permessage-deflate")).await;
    let mut rx = Reassembler::default();
    edge.auth(&mut rx, true).await;
    // 32 MiB of zeros deflate to ~32 KiB: under the wire bound, 500 times over it once
    // inflated.
    let bomb = deflate_at(&vec![0u8; 32 << 20], flate2::Compression::best());
    assert!(bomb.len() < 60 << 10, "{}", bomb.len());
    edge.send_frame(OP_BINARY, true, &bomb).await;
    let mut code = None;
    while let Some(f) = edge.next().await {
        code = code.or(f.close_code());
    }
    assert_eq!(code, Some(1009), "closed as too big");
    // The platform is unharmed: the next edge authenticates.
    let e = authed(p.alwayson_addr, s.client(), APP_KEY).await;
    drop(e);
    let m = get(p.rest_addr, "/api/gateways").await.json();
    assert!(m.as_array().is_some(), "{m}");
    p.shutdown().await;
}

#[tokio::test]
async fn a_fragmented_compressed_message_is_held_to_the_bound_too() {
    // Found by the ws_inflate fuzz target: reassembly was bounded by twice the message limit.
    let s = Setup::new("deflate-fragments");
    let p = s.start("websocket:\n  maxMessageBytes: 65536\n").await;
    let mut edge = Raw::open(p.alwayson_addr, s.client(), Some("permessage-deflate")).await;
    let mut rx = Reassembler::default();
    edge.auth(&mut rx, true).await;
    // 100,000 bytes (over 65,536, under twice it) in two compressed fragments.
    let whole = deflate(&vec![7u8; 100_000]);
    let (a, b) = whole.split_at(whole.len() / 2);
    let mut first = frame(OP_BINARY, true, a);
    first[0] &= 0x7f; // not FIN
    let mut tail = frame(0x0, false, b);
    tail[0] |= 0x80;
    edge.tls.write_all(&first).await.unwrap();
    edge.tls.write_all(&tail).await.unwrap();
    let mut code = None;
    while let Some(f) = edge.next().await {
        code = code.or(f.close_code());
    }
    assert_eq!(code, Some(1009), "closed as too big");
    p.shutdown().await;
}

#[tokio::test]
async fn edges_that_offer_nothing_get_no_compression() {
    let s = Setup::new("deflate-none");
    let p = s.start("").await;
    let mut edge = Raw::open(p.alwayson_addr, s.client(), None).await;
    assert!(
        !edge.head.contains("sec-websocket-extensions"),
        "{}",
        edge.head
    );
    let mut rx = Reassembler::default();
    edge.auth(&mut rx, false).await;
    let gws = get(p.rest_addr, "/api/gateways").await.json();
    assert_eq!(gws[0]["compressed"], false, "{gws}");
    p.shutdown().await;
}
