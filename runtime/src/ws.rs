//! The websocket under the AlwaysOn tunnel, on both ends: RFC 6455 with permessage-deflate
//! (RFC 7692) when both sides want it. Edge SDKs offer it, and EMS's `ws_connection.compression`
//! is on by default; tungstenite refuses any frame with RSV1 set, so the tunnel speaks yawc.
//!
//! [`Socket`] wraps a yawc websocket so that
//! - its stream yields `Result<Frame, WebSocketError>`: yawc's own `Stream` ends on an error
//!   without saying which, and a session must tell a too-large (or inflation-bomb) frame from a
//!   closed connection;
//! - pings are rationed ([`PING_BURST`], [`PINGS_PER_SEC`]): yawc queues one pong per ping
//!   without bound, and a peer that pings and never reads once grew that backlog to 1.6 GB in
//!   8 s.
//!
//! [`options`] builds yawc's options from the two things a tunnel end decides: the largest
//! message (a bound on the wire *and* on the inflated size) and whether to use compression.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};

pub use yawc::close::CloseCode;
pub use yawc::{Frame, OpCode, Options, WebSocket, WebSocketError};

/// Pings a peer may send at once before the rationing starts.
pub const PING_BURST: f64 = 64.0;
/// Pings a peer may send per second, sustained. An edge pings every 55 s by default (EMS
/// `ping_rate`); a thousand times that is still far below what hurts.
pub const PINGS_PER_SEC: f64 = 16.0;
/// Messages below this many bytes are sent uncompressed: a property push is ~100 bytes and
/// does not shrink under deflate, so compressing it only costs CPU.
pub const COMPRESSION_THRESHOLD: usize = 256;

/// Which end of the tunnel a socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The edge (sidecar): offers compression.
    Client,
    /// The platform: accepts compression when offered.
    Server,
}

/// yawc's options for one tunnel end.
///
/// `max_message` bounds every incoming message, compressed or inflated, whole or reassembled
/// from fragments (yawc checks the inflated size as it inflates, so a bomb stops at the bound
/// with close code 1009). Both of yawc's limits are the bound: its default read buffer for
/// reassembly is twice the frame limit, and the `ws_inflate` fuzz target found a fragmented
/// compressed message of 69,331 bytes passing a 65,536 bound that way.
/// With `compression`, the client offers permessage-deflate and the server accepts it; the
/// server asks for `server_no_context_takeover` so it holds no compressor between messages
/// for each of thousands of edges. Level 1: AlwaysOn messages are small and latency matters.
pub fn options(end: End, max_message: usize, compression: bool) -> Options {
    // yawc's bounds are exclusive.
    let limit = max_message + 1;
    let o = Options::default().with_limits(limit, limit).with_no_delay();
    if !compression {
        return o.without_compression();
    }
    let o = o
        .with_low_latency_compression()
        .with_compression_threshold(COMPRESSION_THRESHOLD);
    match end {
        End::Client => o,
        End::Server => o.server_no_context_takeover(),
    }
}

/// Whether a `Sec-WebSocket-Extensions` value (request or response) names permessage-deflate.
pub fn names_deflate(extensions: &str) -> bool {
    extensions
        .split(',')
        .any(|e| e.split(';').next().map(str::trim) == Some("permessage-deflate"))
}

/// Why a [`Socket`] ended its stream with an error of its own.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The websocket failed (protocol error, too large, I/O).
    #[error(transparent)]
    Ws(#[from] WebSocketError),
    /// The peer sent pings faster than [`PINGS_PER_SEC`] beyond [`PING_BURST`].
    #[error("ping flood: more than {PINGS_PER_SEC} pings per second")]
    PingFlood,
}

/// A tunnel websocket: frames in (errors kept), frames out, pings rationed.
pub struct Socket<S> {
    ws: WebSocket<S>,
    ping_tokens: f64,
    ping_refill: Instant,
}

impl<S> Socket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps an upgraded websocket.
    pub fn new(ws: WebSocket<S>) -> Self {
        Self {
            ws,
            ping_tokens: PING_BURST,
            ping_refill: Instant::now(),
        }
    }

    /// Takes one ping token; `false` when the peer has none left.
    fn take_ping(&mut self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.ping_refill).as_secs_f64() * PINGS_PER_SEC;
        self.ping_refill = now;
        self.ping_tokens = (self.ping_tokens + earned).min(PING_BURST);
        if self.ping_tokens < 1.0 {
            return false;
        }
        self.ping_tokens -= 1.0;
        true
    }
}

impl<S> Stream for Socket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Item = Result<Frame, SocketError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match ready!(this.ws.poll_next_frame(cx)) {
            Ok(f) if f.opcode() == OpCode::Ping && !this.take_ping() => {
                Poll::Ready(Some(Err(SocketError::PingFlood)))
            }
            Ok(f) => Poll::Ready(Some(Ok(f))),
            Err(WebSocketError::ConnectionClosed) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }
}

impl<S> Sink<Frame> for Socket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Error = WebSocketError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().ws).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Frame) -> Result<(), Self::Error> {
        Pin::new(&mut self.get_mut().ws).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().ws).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().ws).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflate_is_found_among_extensions() {
        assert!(names_deflate("permessage-deflate"));
        assert!(names_deflate(
            "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"
        ));
        assert!(!names_deflate("x-webkit-deflate-frame"));
        assert!(!names_deflate("permessage-deflate-not"));
    }
}
