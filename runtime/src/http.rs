//! What every HTTP listener of Edgeway applies before a request reaches its routes: a cap on
//! open connections and a deadline for request headers (which is also the keep-alive idle
//! time, since hyper arms it whenever a connection waits for its next request).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A listener's connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Time to receive a request's headers, counted from the connection's start or its last
    /// response (so it is the idle keep-alive time as well).
    pub header_timeout: Duration,
}

/// Counts a listener's open connections.
#[derive(Debug, Clone)]
pub struct Connections(Arc<Semaphore>);

impl Connections {
    /// Room for `max` connections.
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max)))
    }

    /// A slot for one more connection, held for its lifetime; `None` when all are taken.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

/// An HTTP/1.1 + HTTP/2 connection builder with the header deadline armed (hyper applies
/// none without a timer) and HTTP/2 keep-alive pings, so a silent HTTP/2 peer is dropped.
pub fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    b
}
