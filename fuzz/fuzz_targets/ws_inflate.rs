//! The platform's websocket with permessage-deflate negotiated, fed client frames built from
//! the input (compressed or not, fragmented or not, any opcode) or the raw input as the byte
//! stream: nothing may panic, and no message may come out larger than the bound — inflation
//! included, the bomb case (`runtime::ws::options`).
#![no_main]

use std::sync::OnceLock;

use edgeway_runtime::ws::{options, End, Socket, WebSocket};
use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;

/// The bound under test (the platform's default is 1 MiB; smaller keeps executions fast).
const MAX: usize = 64 << 10;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Client frames from the input: per frame a flags byte (FIN, RSV1, opcode), a length byte
/// and that many payload bytes, masked as a client must.
fn frames(data: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let (flags, len) = (rest[0], usize::from(rest[1]) * 4);
        let payload = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        out.push(flags & 0xcf);
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 0 {
        frames(data)
    } else {
        data.to_vec()
    };
    runtime().block_on(async move {
        let (mut client, server) = tokio::io::duplex(bytes.len() + 1);
        client.write_all(&bytes).await.unwrap();
        drop(client);
        let ws = WebSocket::from_stream_with_extensions(
            server,
            yawc::Role::Server,
            Some("permessage-deflate; server_no_context_takeover"),
            options(End::Server, MAX, true),
        )
        .unwrap();
        let mut socket = Socket::new(ws);
        while let Some(Ok(frame)) = socket.next().await {
            assert!(
                frame.payload().len() <= MAX,
                "a {} byte message passed the {MAX} byte bound",
                frame.payload().len()
            );
        }
    });
});
