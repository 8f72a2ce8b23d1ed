//! One authenticated AlwaysOn session as the rest of the platform sees it: who it is, which
//! gateway it announced, its outbound queue, and platform → edge requests correlated by request
//! id. The registry keeps sessions; the protocol handler (`edge.rs`) drives them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgeway_protocol::vtq::{GET_METADATA, NOTIFY_PROPERTY_UPDATE};
use edgeway_protocol::{Gateway, InfoTable, Message, Primitive, Response};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What the websocket layer queues for a session's writer.
#[derive(Debug)]
pub enum Outbound {
    /// An AlwaysOn message (split into chunks when large).
    Message(Message),
    /// A websocket ping.
    Ping,
    /// A websocket close with code and reason; the writer stops after it.
    Close(u16, String),
}

/// Why a platform → edge request produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// No response within the deadline.
    #[error("the edge did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The session ended (or was ending) before the edge answered.
    #[error("session {0} closed before the edge answered")]
    Closed(u32),
    /// The edge answered in a way the platform cannot use.
    #[error("protocol error: {0}")]
    Protocol(String),
}

type Pending = HashMap<u32, oneshot::Sender<Result<Response, TunnelError>>>;

/// One authenticated AlwaysOn session: identity, bindings owner, and the request tunnel.
pub struct EdgeSession {
    /// The session id carried by every message after AUTH.
    pub id: u32,
    /// Authenticated principal: app key name, else the client certificate identity.
    pub principal: String,
    /// Verified client certificate identity, when one was presented.
    pub client_cert: Option<String>,
    /// Remote socket address.
    pub remote: SocketAddr,
    /// Epoch milliseconds of authentication.
    pub connected_since: i64,
    /// Whether the websocket negotiated permessage-deflate.
    pub compressed: bool,
    gateway: Mutex<Option<Gateway>>,
    out: mpsc::Sender<Outbound>,
    pending: Mutex<(bool, Pending)>,
    next_request_id: AtomicU32,
    closing: AtomicBool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for EdgeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeSession")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// Authenticated identity of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Principal name.
    pub principal: String,
    /// Certificate identity, when a verified client certificate was presented.
    pub client_cert: Option<String>,
}

impl EdgeSession {
    /// A session that queues outgoing traffic on `out`.
    pub fn new(
        id: u32,
        identity: Identity,
        remote: SocketAddr,
        compressed: bool,
        out: mpsc::Sender<Outbound>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            id,
            principal: identity.principal,
            client_cert: identity.client_cert,
            remote,
            connected_since: now_ms(),
            compressed,
            gateway: Mutex::new(None),
            out,
            pending: Mutex::new((false, HashMap::new())),
            next_request_id: AtomicU32::new(1),
            closing: AtomicBool::new(false),
            metrics,
        }
    }

    /// The gateway announced by the last BIND that carried one.
    pub fn gateway(&self) -> Option<Gateway> {
        self.gateway
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The announced gateway name.
    pub fn gateway_name(&self) -> Option<String> {
        self.gateway().map(|g| g.name)
    }

    /// The gateway name, else the principal: how things name their gateway.
    pub fn display_gateway(&self) -> String {
        self.gateway_name()
            .unwrap_or_else(|| self.principal.clone())
    }

    pub(crate) fn set_gateway(&self, g: Gateway) {
        *self.gateway.lock().unwrap_or_else(|p| p.into_inner()) = Some(g);
    }

    /// Queues a message for the edge; `false` when the session's writer is gone.
    pub async fn send(&self, msg: Message) -> bool {
        self.out.send(Outbound::Message(msg)).await.is_ok()
    }

    /// Asks the session's connection to close with a websocket close code.
    pub fn close(&self, code: u16, reason: &str) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.out.try_send(Outbound::Close(code, reason.to_owned()));
    }

    /// Whether a close was requested.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    fn next_request_id(&self) -> u32 {
        loop {
            let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Sends a request to the edge and waits for its response (any status) or the deadline.
    /// `kind` labels metrics. The request and session ids are set here.
    pub async fn request(
        &self,
        kind: &'static str,
        mut msg: Message,
        timeout: Duration,
    ) -> Result<Response, TunnelError> {
        let request_id = self.next_request_id();
        let h = msg.header_mut();
        h.request_id = request_id;
        h.session_id = self.id;
        h.endpoint_id = 0;
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if p.0 {
                return Err(TunnelError::Closed(self.id));
            }
            p.1.insert(request_id, tx);
        }
        let started = Instant::now();
        let exchange = async {
            if !self.send(msg).await {
                return Err(TunnelError::Closed(self.id));
            }
            rx.await.unwrap_or(Err(TunnelError::Closed(self.id)))
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(TunnelError::Timeout(timeout)),
        };
        if result.is_err() {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .remove(&request_id);
        }
        let outcome = match &result {
            Ok(r) if r.status.is_success() => "success",
            Ok(_) => "edgeError",
            Err(TunnelError::Timeout(_)) => "timeout",
            Err(TunnelError::Closed(_)) => "closed",
            Err(TunnelError::Protocol(_)) => "protocolError",
        };
        self.metrics.edge_request(kind, outcome, started.elapsed());
        result
    }

    /// Reads a property from the edge (GET `<thing>/Properties/<p>`).
    pub async fn read_property(
        &self,
        thing: &str,
        property: &str,
        timeout: Duration,
    ) -> Result<Response, TunnelError> {
        let msg = Message::read_property(0, thing, property);
        self.request("readProperty", msg, timeout).await
    }

    /// Writes a property on the edge (PUT `<thing>/Properties/<p>`).
    pub async fn write_property(
        &self,
        thing: &str,
        property: &str,
        value: Primitive,
        timeout: Duration,
    ) -> Result<Response, TunnelError> {
        let msg = Message::write_property(0, thing, property, value);
        self.request("writeProperty", msg, timeout).await
    }

    /// Invokes a service on the edge (POST `<thing>/Services/<s>`).
    pub async fn invoke_service(
        &self,
        thing: &str,
        service: &str,
        params: Option<InfoTable>,
        timeout: Duration,
    ) -> Result<Response, TunnelError> {
        let msg = Message::invoke_service(0, thing, service, params);
        self.request("invokeService", msg, timeout).await
    }

    /// Tells the edge a thing's subscriptions changed (POST `NotifyPropertyUpdate`).
    pub async fn notify_property_update(
        &self,
        thing: &str,
        timeout: Duration,
    ) -> Result<Response, TunnelError> {
        let msg = Message::invoke_service(0, thing, NOTIFY_PROPERTY_UPDATE, None);
        self.request("notifyPropertyUpdate", msg, timeout).await
    }

    /// Asks the edge for a thing's definitions (POST `<thing>/Services/GetMetadata`).
    pub async fn get_metadata(
        &self,
        thing: &str,
        timeout: Duration,
    ) -> Result<Response, TunnelError> {
        let msg = Message::invoke_service(0, thing, GET_METADATA, None);
        self.request("getMetadata", msg, timeout).await
    }

    /// Hands a response from the edge to the request waiting for it.
    pub(crate) fn complete(&self, response: Response) {
        let waiter = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .remove(&response.header.request_id);
        match waiter {
            Some(tx) => {
                let _ = tx.send(Ok(response));
            }
            None => tracing::debug!(
                session = self.id,
                request_id = response.header.request_id,
                "response for no pending request (late or unknown); dropped"
            ),
        }
    }

    pub(crate) fn fail(&self, request_id: u32, error: TunnelError) {
        let waiter = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .remove(&request_id);
        if let Some(tx) = waiter {
            let _ = tx.send(Err(error));
        }
    }

    /// Marks the session ended: every waiting request fails with [`TunnelError::Closed`].
    pub fn shut(&self) {
        let drained: Vec<_> = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            p.0 = true;
            p.1.drain().collect()
        };
        for (_, tx) in drained {
            let _ = tx.send(Err(TunnelError::Closed(self.id)));
        }
    }

    /// Requests waiting for a response.
    pub fn pending_requests(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .len()
    }
}
