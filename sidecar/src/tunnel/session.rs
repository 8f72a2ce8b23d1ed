//! One connected session: AUTH, BIND, subscriptions, then the loop that pushes queued updates
//! (acknowledged by the platform's responses), answers platform requests and keeps the
//! connection alive — detecting a silent platform within the keep-alive deadline.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeway_runtime::ws::{CloseCode, Frame, OpCode, SocketError};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};

use super::connect::Ws;
use super::downstream::{self, FollowUp};
use super::outbox::Update;
use super::Shared;
use edgeway_protocol::multipart::split_encoded;
use edgeway_protocol::vtq::{
    encode_update_subscribed_property_values, read_subscriptions, VtqRef, EVENT_TIME_HEADER,
};
use edgeway_protocol::{
    split, DataShape, FieldDefinition, Header, InfoTable, Message, Primitive, Reassembler,
    StatusCode, WireType,
};

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The platform refused the app key or certificate.
    #[error("platform refused authentication: {0}")]
    Unauthorized(String),
    /// The platform refused a BIND.
    #[error("platform refused BIND: {0}")]
    BindRefused(String),
    /// A stage of the handshake took too long.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// Nothing arrived from the platform within the keep-alive deadline.
    #[error("no answer to keep-alive within {0:?}: connection presumed dead")]
    KeepAlive(Duration),
    /// A connect attempt failed at `stage` (see `ConnectError::stage`).
    #[error("{1}")]
    Connect(&'static str, String),
    /// The websocket failed or closed.
    #[error("websocket: {0}")]
    Ws(String),
    /// The platform sent bytes we cannot decode.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Shut down on request.
    #[error("shutting down")]
    Shutdown,
}

/// Frames handled in one go before the loop sends again (bounded, so sending is not starved).
const DRAIN_FRAMES: usize = 1024;

/// Which properties the platform wants per thing; `None` means all of them.
type Subscriptions = HashMap<String, Option<HashSet<String>>>;

/// A live session over one websocket.
pub struct Session<'a> {
    shared: &'a Arc<Shared>,
    ws: Ws,
    reasm: Reassembler,
    session_id: u32,
    last_rx: Instant,
    /// Requests sent and not answered: request id → what the answer settles.
    in_flight: HashMap<u32, Pending>,
    subscriptions: Subscriptions,
    /// Things whose subscriptions are still to be asked for, within the in-flight window (asking
    /// for 100,000 at once, unread, would fill both sockets' buffers and stall both ends).
    to_subscribe: std::collections::VecDeque<String>,
    /// Bytes of the update requests in `in_flight`, for `maxInFlightBytes`.
    in_flight_bytes: usize,
    /// Encoded values of the request being built, reused across requests.
    values: Vec<Primitive>,
    /// Sequence numbers answered but not yet removed from the outbox (see `apply_acks`).
    acked: Vec<u64>,
}

enum Pending {
    /// Queue sequence numbers the answer acknowledges, and the request's size in bytes.
    Updates(Vec<u64>, usize),
    Subscriptions(String),
}

impl<'a> Session<'a> {
    /// Authenticates and binds every thing; the session is then ready to run.
    pub async fn establish(shared: &'a Arc<Shared>, ws: Ws) -> Result<Session<'a>, SessionError> {
        let mut s = Session {
            shared,
            ws,
            reasm: Reassembler::default(),
            session_id: 0,
            last_rx: Instant::now(),
            in_flight: HashMap::new(),
            subscriptions: HashMap::new(),
            to_subscribe: Default::default(),
            in_flight_bytes: 0,
            values: Vec::new(),
            acked: Vec::new(),
        };
        let id = shared.next_id();
        s.send(Message::auth(id, &shared.app_key)).await?;
        let resp = s.expect_response(id, "AUTH").await?;
        if !resp.0.is_success() {
            return Err(SessionError::Unauthorized(resp.1));
        }
        s.session_id = resp.2;
        let names = shared.registry.thing_names();
        let gateway = shared
            .config
            .gateway
            .as_ref()
            .map(|g| (g.name.as_str(), g.type_name.as_str()));
        for (i, chunk) in names.chunks(500).enumerate() {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let id = shared.next_id();
            let gw = if i == 0 { gateway } else { None };
            s.send(Message::bind(id, gw, &refs)).await?;
            let (status, reason, _) = s.expect_response(id, "BIND").await?;
            if !status.is_success() {
                return Err(SessionError::BindRefused(format!(
                    "{}: {reason}",
                    status.name()
                )));
            }
        }
        s.to_subscribe = names.into();
        Ok(s)
    }

    /// Runs until the connection fails or shutdown; queued updates flow while it runs.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> SessionError {
        let (answers_tx, mut answers) = mpsc::channel::<(Message, FollowUp)>(64);
        let ka = Duration::from_millis(self.shared.config.timing.keep_alive_ms);
        let ka_deadline =
            ka + Duration::from_millis(self.shared.config.timing.keep_alive_timeout_ms);
        let mut tick = tokio::time::interval(Duration::from_millis(
            (self.shared.config.timing.keep_alive_timeout_ms / 4).clamp(10, 1000),
        ));
        let mut ka_sent = false;
        self.shared.outbox_mut().rewind();
        loop {
            let max = self.shared.config.max_in_flight;
            // Subscriptions take at most half the window, so updates keep flowing meanwhile.
            if self.in_flight.len() < max / 2 + 1 && !self.to_subscribe.is_empty() {
                if let Err(e) = self.request_subscriptions(max / 2 + 1).await {
                    return e;
                }
                continue;
            }
            // Requests are counted exactly; bytes only gate new batches (a batch may overshoot).
            // A batch waits until a quarter of the window is free: reopening it one answer at a
            // time would send one request per flush (one TLS record and syscall each).
            let window_open = self.in_flight.len() + (max / 4).max(1) <= max
                && self.in_flight_bytes < self.shared.config.max_in_flight_bytes;
            if window_open && self.shared.outbox_mut().has_unsent() {
                if let Err(e) = self.send_updates(max - self.in_flight.len()).await {
                    return e;
                }
                continue;
            }
            tokio::select! {
                frame = self.ws.next() => {
                    let mut result = self.on_next(frame, &answers_tx).await;
                    // Take every frame already received before sending again: answers arrive
                    // in bursts, and the window should reopen by a burst, not by one.
                    for _ in 0..DRAIN_FRAMES {
                        if result.is_err() {
                            break;
                        }
                        match self.ws.next().now_or_never() {
                            Some(frame) => result = self.on_next(frame, &answers_tx).await,
                            None => break,
                        }
                    }
                    self.apply_acks();
                    if let Err(e) = result { return e; }
                    ka_sent = false;
                }
                Some((msg, follow)) = answers.recv() => {
                    if let Err(e) = self.send(msg).await { return e; }
                    if let FollowUp::Resubscribe(thing) = follow {
                        self.to_subscribe.push_back(thing);
                    }
                }
                _ = self.shared.queue.pushed(), if window_open => {}
                _ = tick.tick() => {
                    let idle = self.last_rx.elapsed();
                    if idle >= ka_deadline {
                        return SessionError::KeepAlive(ka_deadline);
                    }
                    if idle >= ka && !ka_sent {
                        ka_sent = true;
                        // A websocket ping, as the C SDK keeps its connection alive; it sends no
                        // KEEP_ALIVE message (docs/protocol.md, "Transport"). Any frame back
                        // (the pong included) counts as life.
                        let payload = edgeway_protocol::ping_payload().to_vec();
                        if let Err(e) = self.write(Frame::ping(payload), true).await {
                            return e;
                        }
                    }
                    self.reasm.expire(Instant::now());
                }
                _ = shutdown.changed() => {
                    let _ = self.ws.send(Frame::close(CloseCode::Away, "shutting down")).await;
                    let _ = self.ws.close().await;
                    return SessionError::Shutdown;
                }
            }
        }
    }

    /// Sends the next batch of queued updates, one request per thing, in queue order, at most
    /// `room` requests, all written with one flush.
    async fn send_updates(&mut self, room: usize) -> Result<(), SessionError> {
        let groups = {
            let mut outbox = self.shared.outbox_mut();
            // A failing volume was logged once and is in the metrics; sending goes on.
            let _ = outbox.flush();
            outbox.next_groups(self.shared.config.batch_rows, room)
        };
        let mut unwanted = Vec::new();
        for g in groups {
            let mut values = std::mem::take(&mut self.values);
            values.clear();
            let mut seqs = Vec::with_capacity(g.rows.len());
            let mut rows = Vec::with_capacity(g.rows.len());
            for (seq, u) in &g.rows {
                if u.event {
                    self.send_event(*seq, u).await?;
                    continue;
                }
                match self.wanted(u).then(|| to_wire(u)).flatten() {
                    Some(v) => {
                        seqs.push(*seq);
                        values.push(v);
                        rows.push(u);
                    }
                    None => unwanted.push(*seq),
                }
            }
            if seqs.is_empty() {
                self.values = values;
                continue;
            }
            let id = self.shared.next_id();
            let header = Header {
                request_id: id,
                endpoint_id: 0,
                session_id: self.session_id,
            };
            let bytes = encode_update_subscribed_property_values(
                &header,
                &g.thing,
                rows.iter().zip(&values).map(|(u, v)| VtqRef {
                    name: &u.property,
                    value: v,
                    time: u.time_ms,
                    quality: u.quality.as_str(),
                }),
            );
            self.values = values;
            let n = seqs.len() as u64;
            let size = bytes.len();
            self.in_flight.insert(id, Pending::Updates(seqs, size));
            self.in_flight_bytes += size;
            let frames = split_encoded(bytes, self.shared.config.chunk_size)
                .map_err(|e| SessionError::Protocol(e.to_string()))?;
            self.feed_frames(frames).await?;
            self.shared.metrics.tunnel_sent(n);
        }
        if !unwanted.is_empty() {
            self.shared
                .metrics
                .tunnel_unsubscribed(unwanted.len() as u64);
            self.shared.outbox_mut().ack(unwanted);
        }
        // One flush (one write) for the whole batch, not one per thing.
        self.flush().await
    }

    /// Sends one queued event as the SDK fires it (POST `<thing>/Events/<name>`, the data as a
    /// one-row InfoTable), stamped with its firing time in the `eventTime` header so the
    /// platform recognises a resend. Acknowledged like updates.
    async fn send_event(&mut self, seq: u64, u: &Update) -> Result<(), SessionError> {
        let data = match event_table(u) {
            Some(t) => t,
            None => {
                tracing::warn!(thing = %u.thing, event = %u.property, "event data cannot be encoded; dropped");
                self.shared.metrics.tunnel_rejected(1);
                self.shared.outbox_mut().ack(vec![seq]);
                return Ok(());
            }
        };
        let id = self.shared.next_id();
        let msg = match Message::fire_event(id, &u.thing, &u.property, Some(data)) {
            Message::Request(mut r) => {
                r.header.session_id = self.session_id;
                r.headers
                    .push((EVENT_TIME_HEADER.to_owned(), u.time_ms.to_string()));
                Message::Request(r)
            }
            other => other,
        };
        let frames = split(&msg, self.shared.config.chunk_size)
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        let size = frames.iter().map(Vec::len).sum();
        self.in_flight.insert(id, Pending::Updates(vec![seq], size));
        self.in_flight_bytes += size;
        self.feed_frames(frames).await?;
        self.shared.metrics.tunnel_sent(1);
        Ok(())
    }

    fn wanted(&self, u: &Update) -> bool {
        match self.subscriptions.get(&*u.thing) {
            Some(Some(set)) => set.contains(&*u.property),
            Some(None) => true,
            // Not yet answered: keep sending; the platform filters what it does not want.
            None => true,
        }
    }

    /// Asks for the subscriptions of queued things while fewer than `limit` requests are
    /// unanswered, with one flush for all of them.
    async fn request_subscriptions(&mut self, limit: usize) -> Result<(), SessionError> {
        while self.in_flight.len() < limit {
            let Some(thing) = self.to_subscribe.pop_front() else {
                break;
            };
            let id = self.shared.next_id();
            let msg = Message::get_property_subscriptions(id, &thing);
            self.in_flight.insert(id, Pending::Subscriptions(thing));
            self.feed(msg).await?;
        }
        self.flush().await
    }

    /// Handles what the websocket yielded: a frame, an error, or its end.
    async fn on_next(
        &mut self,
        frame: Option<Result<Frame, SocketError>>,
        answers: &mpsc::Sender<(Message, FollowUp)>,
    ) -> Result<(), SessionError> {
        match frame {
            Some(Ok(f)) => self.on_frame(f, answers).await,
            Some(Err(e)) => Err(SessionError::Ws(e.to_string())),
            None => Err(SessionError::Ws("closed by the platform".into())),
        }
    }

    /// Removes the answered updates from the outbox, once per burst of answers (one lock, and
    /// one acknowledgement line when persisted).
    fn apply_acks(&mut self) {
        if !self.acked.is_empty() {
            let mut outbox = self.shared.outbox_mut();
            outbox.ack(self.acked.drain(..));
            self.shared.metrics.tunnel_queue(&outbox.stats());
        }
    }

    async fn on_frame(
        &mut self,
        frame: Frame,
        answers: &mpsc::Sender<(Message, FollowUp)>,
    ) -> Result<(), SessionError> {
        self.last_rx = Instant::now();
        let bytes = match frame.opcode() {
            OpCode::Binary => frame.into_payload(),
            OpCode::Close => return Err(SessionError::Ws("closed by the platform".into())),
            OpCode::Text => {
                return Err(SessionError::Protocol(
                    "text frame on a binary protocol".into(),
                ))
            }
            _ => return Ok(()),
        };
        let msg = match self.reasm.push(&bytes, self.last_rx) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => return Err(SessionError::Protocol(e.to_string())),
        };
        match msg {
            Message::Response(r) => self.on_response(r),
            Message::Request(req) => {
                let shared = self.shared.clone();
                let answers = answers.clone();
                tokio::spawn(async move {
                    let answer = downstream::handle(&shared.registry, req).await;
                    let _ = answers.send(answer).await;
                });
                Ok(())
            }
            Message::KeepAlive(h) => {
                let resp = Message::response(h, StatusCode::SUCCESS, None);
                self.send(resp).await
            }
            other => {
                tracing::debug!(
                    kind = other.kind(),
                    "ignoring unexpected message from the platform"
                );
                Ok(())
            }
        }
    }

    fn on_response(&mut self, r: edgeway_protocol::Response) -> Result<(), SessionError> {
        match self.in_flight.remove(&r.header.request_id) {
            Some(Pending::Updates(seqs, size)) => {
                self.in_flight_bytes -= size;
                let n = seqs.len() as u64;
                if r.status.is_success() {
                    self.shared.metrics.tunnel_acked(n);
                } else {
                    // The platform will never take these; keeping them would loop forever.
                    tracing::warn!(
                        status = r.status.name(),
                        reason = r.reason.as_deref().unwrap_or(""),
                        updates = n,
                        "platform rejected updates"
                    );
                    self.shared.metrics.tunnel_rejected(n);
                }
                self.acked.extend(seqs);
            }
            Some(Pending::Subscriptions(thing)) => {
                let subs = r
                    .content
                    .as_ref()
                    .map(read_subscriptions)
                    .unwrap_or_default();
                let all = !r.status.is_success() || subs.iter().any(|s| s.edge_name == "*");
                // A row with pushType NEVER names a property the platform does not want.
                let set = (!all).then(|| {
                    subs.into_iter()
                        .filter(|s| {
                            !s.push_type
                                .as_deref()
                                .is_some_and(|t| t.eq_ignore_ascii_case("NEVER"))
                        })
                        .map(|s| s.edge_name)
                        .collect()
                });
                self.subscriptions.insert(thing, set);
            }
            None => {}
        }
        Ok(())
    }

    /// Waits for the response to a handshake request, under the stage timeout.
    async fn expect_response(
        &mut self,
        id: u32,
        stage: &'static str,
    ) -> Result<(StatusCode, String, u32), SessionError> {
        let deadline = Duration::from_millis(self.shared.config.timing.stage_timeout_ms);
        let wait = async {
            loop {
                let frame = match self.ws.next().await {
                    Some(Ok(f)) if f.opcode() == OpCode::Binary => f.into_payload(),
                    Some(Ok(f)) if f.opcode() == OpCode::Close => {
                        return Err(SessionError::Ws(format!("closed during {stage}")))
                    }
                    None => return Err(SessionError::Ws(format!("closed during {stage}"))),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(SessionError::Ws(e.to_string())),
                };
                self.last_rx = Instant::now();
                match self.reasm.push(&frame, Instant::now()) {
                    Ok(Some(Message::Response(r))) if r.header.request_id == id => {
                        return Ok((r.status, r.reason.unwrap_or_default(), r.header.session_id))
                    }
                    Ok(_) => continue,
                    Err(e) => return Err(SessionError::Protocol(e.to_string())),
                }
            }
        };
        tokio::time::timeout(deadline, wait)
            .await
            .map_err(|_| SessionError::Timeout(stage))?
    }

    /// Sends one message now.
    async fn send(&mut self, msg: Message) -> Result<(), SessionError> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Queues a message's frames on the websocket without flushing.
    async fn feed(&mut self, msg: Message) -> Result<(), SessionError> {
        let msg = if matches!(msg, Message::Auth(_)) {
            msg
        } else {
            msg.with_session(self.session_id)
        };
        let frames = split(&msg, self.shared.config.chunk_size)
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        self.feed_frames(frames).await
    }

    /// Queues encoded frames on the websocket without flushing.
    async fn feed_frames(&mut self, frames: Vec<Vec<u8>>) -> Result<(), SessionError> {
        for f in frames {
            self.write(Frame::binary(f), false).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SessionError> {
        let deadline = self.write_deadline();
        match tokio::time::timeout_at(deadline, self.ws.flush()).await {
            Ok(r) => r.map_err(|e| SessionError::Ws(e.to_string())),
            Err(_) => Err(self.stalled()),
        }
    }

    /// Feeds (or sends, with `flush`) one frame within the write deadline.
    async fn write(&mut self, frame: Frame, flush: bool) -> Result<(), SessionError> {
        let deadline = self.write_deadline();
        let io = async {
            if flush {
                self.ws.send(frame).await
            } else {
                self.ws.feed(frame).await
            }
        };
        match tokio::time::timeout_at(deadline, io).await {
            Ok(r) => r.map_err(|e| SessionError::Ws(e.to_string())),
            Err(_) => Err(self.stalled()),
        }
    }

    /// The latest a write may complete: the keep-alive deadline counted from the platform's
    /// last frame, and at least the pong timeout from now. A write blocked past it means a
    /// path that takes nothing and says nothing — a half-open tunnel. The keep-alive timer
    /// cannot run while a write waits: the fault suite's blackholed link held one for minutes
    /// (a full socket buffer) before writes had this bound.
    fn write_deadline(&self) -> tokio::time::Instant {
        let t = &self.shared.config.timing;
        let timeout = Duration::from_millis(t.keep_alive_timeout_ms);
        let silent_for = self.last_rx + Duration::from_millis(t.keep_alive_ms) + timeout;
        tokio::time::Instant::from_std(silent_for.max(Instant::now() + timeout))
    }

    fn stalled(&self) -> SessionError {
        let t = &self.shared.config.timing;
        SessionError::KeepAlive(Duration::from_millis(
            t.keep_alive_ms + t.keep_alive_timeout_ms,
        ))
    }
}

/// An outbox entry's value in the protocol's typed form; `None` (logged) when it cannot be.
/// An event's data as a one-row InfoTable, each field typed from its JSON value.
fn event_table(u: &Update) -> Option<InfoTable> {
    let serde_json::Value::Object(data) = &u.value else {
        return None;
    };
    let mut fields = Vec::with_capacity(data.len());
    let mut row = Vec::with_capacity(data.len());
    for (name, v) in data {
        let p = Primitive::infer_json(v).ok()?;
        fields.push(FieldDefinition::new(name.as_str(), p.wire_type()));
        row.push(p);
    }
    let mut t = InfoTable::new(DataShape::new(fields));
    t.rows.push(row);
    Some(t)
}

fn to_wire(u: &Update) -> Option<Primitive> {
    let wt = WireType::from_base_type(u.base_type);
    match Primitive::from_json(wt, &u.value) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(thing = %u.thing, property = %u.property, error = %e, "update cannot be encoded; dropped");
            None
        }
    }
}
