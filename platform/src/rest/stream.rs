//! `GET /api/stream`: server-sent events from the registry's bounded broadcast.
//!
//! A client that falls more than the buffer behind is dropped (its stream ends) instead of
//! slowing anything down; it may reconnect and re-read state from the REST API.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::response::Body;
use crate::metrics::Metrics;
use crate::registry::{Event, Registry};

/// Interval of `:` comment lines that keep idle connections (and proxies) alive.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// One event in SSE wire form.
pub fn encode(event: &Event) -> Bytes {
    Bytes::from(format!(
        "event: {}\ndata: {}\n\n",
        event.name(),
        event.data()
    ))
}

struct State {
    rx: broadcast::Receiver<Event>,
    heartbeat: tokio::time::Interval,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    opened: bool,
}

/// The streaming response; it ends when the client lags, or the platform shuts down.
pub fn response(
    registry: &Registry,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = State {
        rx: registry.subscribe(),
        heartbeat,
        shutdown,
        metrics,
        opened: false,
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        if !st.opened {
            st.opened = true;
            st.heartbeat.tick().await;
            return Some((Ok(Frame::data(Bytes::from_static(b": connected\n\n"))), st));
        }
        tokio::select! {
            ev = st.rx.recv() => match ev {
                Ok(e) => Some((Ok::<_, Infallible>(Frame::data(encode(&e))), st)),
                Err(RecvError::Lagged(n)) => {
                    st.metrics.stream_client_dropped();
                    tracing::warn!(missed = n, "event stream client too slow; dropped");
                    None
                }
                Err(RecvError::Closed) => None,
            },
            _ = st.heartbeat.tick() => Some((Ok(Frame::data(Bytes::from_static(b":\n\n"))), st)),
            _ = st.shutdown.changed() => None,
        }
    });
    let mut resp = Response::new(StreamBody::new(events).boxed_unsync());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}
