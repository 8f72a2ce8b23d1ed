//! The MQTT platform connector: the gateway's updates published to a broker with QoS 1, a
//! PUBACK being the platform's acknowledgement, through the same acknowledged queue as the
//! AlwaysOn tunnel ([`crate::uplink`]). Nothing leaves the queue before its PUBACK, so a broker
//! restart or outage loses nothing within the queue's bound.
//!
//! The client is `rumqttc` (maintained by Bytebeam, MQTT 3.1.1 and 5, tokio, rustls with our
//! own `ClientConfig`, websockets); we drive its event loop ourselves. Its own retransmission
//! is switched off in effect: after a lost connection the in-flight and pending publishes it
//! kept are discarded and the queue is rewound, so the queue is the only source of what is
//! resent and the PUBACK ↔ queue-entry mapping stays exact (`Flight`).
//!
//! Commands (service calls, property writes) arrive on the layout's command topics and run on
//! the registry, at most [`MAX_COMMANDS`] at a time; each is answered on its response topic.
//!
//! Layout: `config` (the `mqtt` section), `client` (the client library behind one face),
//! `topics` (topic names and payloads per preset),
//! `sparkplug` (Sparkplug B's protobuf payloads and sequence numbers), `commands` (running a
//! command and its answer).

mod client;
pub mod commands;
pub mod config;
pub mod sparkplug;
pub mod topics;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::uplink::{self, Queue};
use client::{Client, Connection, Disconnect, Event, Reply};
use commands::Request;
use config::MqttConfig;
use edgeway_runtime::ConfigError;
use sparkplug::Session;
use topics::{Layout, Target};

/// Commands running at once; one more is answered 503 at once rather than queued, so a
/// flood of commands cannot grow memory or starve the event loop.
pub const MAX_COMMANDS: usize = 64;

/// Handle to the running connector.
#[derive(Clone)]
pub struct Mqtt {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Queue,
    registry: Arc<Registry>,
    commands: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    layout: Layout,
    connected: AtomicBool,
    flight: Mutex<Flight>,
    /// Signalled when publishes were acknowledged or a connection came up: room to send.
    room: Notify,
    max_in_flight: usize,
}

/// Which queue entry each publish carries, in the order they were handed to the client.
///
/// The client numbers a publish (its packet id) when it takes it from its request channel, in
/// channel order, and reports that as `Outgoing::Publish(pkid)`; `order` holds the sequence
/// numbers (None: the birth message) of publishes not yet numbered, `by_pkid` of those numbered
/// and waiting for their PUBACK. Both are only changed under this lock, together with handing
/// publishes to the client, so they match the channel exactly.
#[derive(Default)]
struct Flight {
    /// A connection is up (and, with Sparkplug, its births are sent); the feeder may hand
    /// publishes to the client.
    live: bool,
    order: VecDeque<Option<u64>>,
    by_pkid: HashMap<u16, Option<u64>>,
    /// Counts births (and the goodbye): a Sparkplug birth still being sent stops when a newer
    /// one begins or the connector says goodbye.
    births: u64,
    /// Sparkplug's `seq` and `bdSeq`, numbered in the order publishes are handed over.
    session: Session,
}

impl Shared {
    fn flight(&self) -> MutexGuard<'_, Flight> {
        self.flight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Mqtt {
    /// Reads the password and certificate files, opens the queue and starts connecting.
    pub fn start(
        config: MqttConfig,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Mqtt, Vec<JoinHandle<()>>), ConfigError> {
        config.validate()?;
        let layout = Layout::new(&config.topics, &config.gateway, &config.client_id);
        let password = password(&config)?;
        let (queue, queue_tasks) = Queue::start(
            &config.queue,
            "mqtt.queue",
            &registry,
            metrics.clone(),
            shutdown.clone(),
        )?;
        let max_in_flight = usize::from(config.max_in_flight);
        // Room for every publish the feeder may hand over, every command's answer, the birth,
        // the goodbye and the subscriptions, so handing over never waits (it happens under the
        // `Flight` lock).
        let channel = max_in_flight * 2 + MAX_COMMANDS + 8;
        let (client, eventloop) = Client::new(&config, password, layout.will(0), channel)?;
        let shared = Arc::new(Shared {
            queue: queue.clone(),
            registry: registry.clone(),
            commands: Arc::new(Semaphore::new(MAX_COMMANDS)),
            metrics,
            layout,
            connected: AtomicBool::new(false),
            flight: Mutex::new(Flight::default()),
            room: Notify::new(),
            max_in_flight,
        });
        let mut tasks = vec![
            tokio::spawn(drive(
                shared.clone(),
                client.clone(),
                eventloop,
                config.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(feed(shared.clone(), client, shutdown.clone())),
        ];
        tasks.extend(queue_tasks);
        Ok((Mqtt { shared }, tasks))
    }

    /// The queue of updates this connector publishes (push into it to publish).
    pub fn queue(&self) -> &Queue {
        &self.shared.queue
    }

    /// Whether the broker accepted the connection and it is up now.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }
}

/// The password a password file holds: its first line, as it is (spaces may belong to it).
pub fn password_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The password in `passwordFile` (empty without one).
fn password(config: &MqttConfig) -> Result<String, ConfigError> {
    let Some(path) = &config.password_file else {
        return Ok(String::new());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "mqtt.passwordFile",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    Ok(password_line(&text).to_owned())
}

/// Drives the client's event loop: connection state, packet ids, PUBACKs; reconnects with
/// capped exponential backoff and full jitter.
async fn drive(
    shared: Arc<Shared>,
    client: Client,
    mut eventloop: Connection,
    config: MqttConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempt: u32 = 0;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = shutdown.changed() => {
                goodbye(&shared, &client, &mut eventloop).await;
                return;
            }
        };
        match event {
            Ok(Event::ConnAck) => {
                attempt = 0;
                shared.metrics.tunnel_connect_failing(None);
                // A session started clean to get past an oversized message is kept again.
                eventloop.set_clean(!config.persistent_session);
                up(&shared, &client);
            }
            Ok(Event::PublishOut(pkid)) => {
                let mut f = shared.flight();
                if let Some(seq) = f.order.pop_front() {
                    f.by_pkid.insert(pkid, seq);
                }
            }
            Ok(Event::Message {
                topic,
                payload,
                reply,
            }) => command(&shared, &client, &topic, &payload, reply),
            Ok(Event::PubAck(pkid)) => {
                let seq = shared.flight().by_pkid.remove(&pkid).flatten();
                if let Some(seq) = seq {
                    let mut q = shared.queue.lock();
                    q.ack([seq]);
                    shared.metrics.tunnel_acked(1);
                    shared.metrics.tunnel_queue(&q.stats());
                }
                shared.room.notify_one();
            }
            Ok(_) => {}
            Err(lost) => {
                down(&shared, &mut eventloop);
                let why = lost.why;
                if why == Disconnect::Oversized && config.persistent_session {
                    // The broker delivers an unacknowledged QoS 1 message again on every
                    // reconnect of a persistent session: one oversized command would keep the
                    // gateway off the broker. The next session starts clean, dropping it (and
                    // whatever else the broker held for this gateway: commands only).
                    eventloop.set_clean(true);
                }
                if shared.layout.is_sparkplug() {
                    // The next connection is another birth/death pair: its NDEATH (the will)
                    // and NBIRTH carry the next bdSeq.
                    let mut f = shared.flight();
                    f.session.bd_seq += 1;
                    eventloop.set_will(shared.layout.will(f.session.bd_seq));
                }
                // A rotated password (a Secret's new value in the mounted file) is used from
                // the next attempt on, without a restart.
                if let (Some(user), Ok(pw)) = (&config.username, password(&config)) {
                    eventloop.set_credentials(user.clone(), pw);
                }
                shared.metrics.tunnel_disconnect(why.label());
                shared.metrics.tunnel_connect_failing(why.failing_stage());
                let delay =
                    uplink::backoff(config.backoff_initial_ms, config.backoff_max_ms, attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(url = %config.url, reason = why.label(), error = %lost.error, retry_in_ms = delay.as_millis() as u64, "mqtt connection down");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// A connection came up: everything unacknowledged is sent again, after the birth message.
fn up(shared: &Arc<Shared>, client: &Client) {
    let mut f = shared.flight();
    f.order.clear();
    f.by_pkid.clear();
    shared.queue.lock().rewind();
    // Sparkplug announces the node by its births (on their own task, below) instead.
    let sparkplug = shared.layout.is_sparkplug();
    if !sparkplug {
        f.order.push_back(None);
        if !client.publish(
            shared.layout.state_topic(),
            true,
            Layout::state_payload(true),
        ) {
            f.order.pop_back();
        }
    }
    // Before the births: a Sparkplug host may ask for a rebirth as soon as it sees the NBIRTH.
    for filter in shared.layout.command_filters() {
        client.subscribe(filter);
    }
    // Sparkplug updates wait for the births, which set `live`.
    f.live = !sparkplug;
    drop(f);
    shared.connected.store(true, Ordering::SeqCst);
    shared.metrics.tunnel_connected(true);
    if sparkplug {
        tracing::info!("mqtt connection up: the broker accepted the session; sending births");
        births(shared.clone(), client.clone());
    } else {
        shared.room.notify_one();
        tracing::info!("mqtt connection up: the broker accepted the session");
    }
}

/// Sparkplug births: NBIRTH, then a DBIRTH per thing with every property's current value, on a
/// task of their own (reading Lua things' values is async, and a fleet's births outnumber the
/// client's channel, so they are handed over as it drains). Updates wait (`live` is false) until
/// all births are handed over, as the specification wants every DBIRTH before its DDATA; a
/// newer birth (a reconnect, a rebirth request) ends this one.
fn births(shared: Arc<Shared>, client: Client) {
    let epoch = {
        let mut f = shared.flight();
        f.live = false;
        f.births += 1;
        f.births
    };
    tokio::spawn(async move {
        let mut devices = Vec::new();
        for thing in shared.registry.thing_names() {
            match shared.registry.read_properties(&thing).await {
                Ok(p) => devices.push((thing, p)),
                Err(e) => tracing::warn!(%thing, error = %e, "thing unreadable; no DBIRTH for it"),
            }
        }
        let mut next = 0; // 0: the NBIRTH; i + 1: devices[i]'s DBIRTH
        while next <= devices.len() {
            match hand_birth(
                &shared,
                &client,
                epoch,
                next.checked_sub(1).map(|i| &devices[i]),
            ) {
                Some(true) => next += 1,
                // The channel is full: wait for the event loop to take some, however long a
                // slow broker takes (giving up would leave updates waiting until a reconnect
                // that may never come). A lost connection, a newer birth or the goodbye ends it.
                Some(false) => tokio::time::sleep(Duration::from_millis(5)).await,
                None => return,
            }
        }
        let mut f = shared.flight();
        if f.births == epoch && shared.connected.load(Ordering::SeqCst) {
            f.live = true;
            drop(f);
            shared.room.notify_one();
            tracing::info!(devices = devices.len(), "sparkplug births sent");
        }
    });
}

/// Hands one birth to the client (`device`: a thing's DBIRTH, else the NBIRTH): `Some(true)`
/// when handed over, `Some(false)` when the channel is full, `None` when a newer birth, the
/// goodbye or a lost connection ended this one.
fn hand_birth(
    shared: &Shared,
    client: &Client,
    epoch: u64,
    device: Option<&(String, Vec<crate::registry::PropertyReading>)>,
) -> Option<bool> {
    let mut f = shared.flight();
    if f.births != epoch || !shared.connected.load(Ordering::SeqCst) {
        return None;
    }
    let before = f.session.clone();
    let (topic, payload) = match device {
        None => (
            shared.layout.sparkplug("NBIRTH", None),
            sparkplug::nbirth(&mut f.session),
        ),
        Some((thing, properties)) => (
            shared.layout.sparkplug("DBIRTH", Some(thing)),
            sparkplug::dbirth(&mut f.session, properties),
        ),
    };
    f.order.push_back(None);
    if client.publish(topic, false, payload) {
        return Some(true);
    }
    f.order.pop_back();
    f.session = before;
    Some(false)
}

/// A connection was lost: what the client kept for resending is discarded (the rewound queue
/// resends it), and the feeder stops until the next connection.
fn down(shared: &Shared, eventloop: &mut Connection) {
    let mut f = shared.flight();
    f.live = false;
    f.order.clear();
    f.by_pkid.clear();
    // Moves the in-flight publishes and whatever still waits in the request channel into
    // `pending`, which is then dropped; the lock keeps the feeder from adding more meanwhile.
    eventloop.discard();
    drop(f);
    shared.connected.store(false, Ordering::SeqCst);
    shared.metrics.tunnel_connected(false);
}

/// At shutdown: says `{"online": false}` or NDEATH (a clean DISCONNECT does not fire the last will) and
/// disconnects, within 2 s.
async fn goodbye(shared: &Shared, client: &Client, eventloop: &mut Connection) {
    if !shared.connected.load(Ordering::SeqCst) {
        return;
    }
    let bd_seq = {
        let mut f = shared.flight();
        f.live = false;
        // Ends a Sparkplug birth still being handed over: the event loop stops with this.
        f.births += 1;
        f.session.bd_seq
    };
    // What the will would say (Sparkplug: NDEATH).
    let (topic, payload, retain) = shared.layout.will(bd_seq);
    client.publish(topic, retain, payload);
    client.disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::DisconnectOut) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Runs a command the broker delivered, on its own task; answers 503 at once when
/// [`MAX_COMMANDS`] are running.
fn command(
    shared: &Arc<Shared>,
    client: &Client,
    topic: &str,
    payload: &[u8],
    reply: Option<Reply>,
) {
    let Some(target) = shared.layout.command(topic) else {
        tracing::debug!(%topic, "message on a topic that is not a command; ignored");
        return;
    };
    let (id, body) = match Request::parse(&shared.registry, &target, payload) {
        Request::NotOurs => {
            tracing::debug!(
                ?target,
                "command for a thing this gateway does not serve; ignored"
            );
            return;
        }
        Request::Invalid(answer) => return respond(shared, client, &target, answer, reply),
        Request::Valid { id, body } => (id, body),
    };
    if target == Target::NodeCommand
        && body.get(sparkplug::REBIRTH) == Some(&serde_json::Value::Bool(true))
    {
        tracing::info!("sparkplug rebirth requested");
        return births(shared.clone(), client.clone());
    }
    let Ok(permit) = shared.commands.clone().try_acquire_owned() else {
        return respond(shared, client, &target, commands::busy(id), reply);
    };
    let (shared, client) = (shared.clone(), client.clone());
    tokio::spawn(async move {
        let answer = commands::run(&shared.registry, &target, id, &body).await;
        drop(permit);
        respond(&shared, &client, &target, answer, reply);
    });
}

/// Publishes a command's answer (QoS 1, not queued: an answer for a caller that has gone is
/// worth nothing after a reconnect). An MQTT 5 request that names a response topic is answered
/// there, with its correlation data (the `generic` and `aws-shadow` commands: IoT Hub and
/// Sparkplug have their own answer topics).
fn respond(
    shared: &Shared,
    client: &Client,
    target: &Target,
    answer: serde_json::Value,
    reply: Option<Reply>,
) {
    let mut f = shared.flight();
    if !f.live {
        tracing::debug!(?target, "connection down; command answer dropped");
        return;
    }
    let before = f.session.clone();
    let (topic, payload) = shared.layout.reply(&mut f.session, target, answer);
    f.order.push_back(None);
    let to_requester = matches!(
        target,
        Target::Service { .. } | Target::Write { .. } | Target::Delta { .. }
    );
    let sent = match reply.filter(|_| to_requester) {
        Some(r) => client.publish_reply(&r, payload),
        None => client.publish(topic, false, payload),
    };
    if !sent {
        f.order.pop_back();
        f.session = before;
    }
}

/// Hands unsent queue entries to the client while a connection is up and fewer than
/// `maxInFlight` wait for their PUBACK.
async fn feed(shared: Arc<Shared>, client: Client, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shared.queue.pushed() => {}
            _ = shared.room.notified() => {}
            _ = shutdown.changed() => return,
        }
        let mut f = shared.flight();
        if !f.live {
            continue;
        }
        let waiting = f.order.len() + f.by_pkid.len();
        let room = shared.max_in_flight.saturating_sub(waiting);
        if room == 0 {
            continue;
        }
        let batch = shared.queue.lock().next_batch(room);
        let mut sent = 0u64;
        for (seq, u) in batch {
            let (topic, payload) = shared.layout.update(&mut f.session, &u);
            f.order.push_back(Some(seq));
            if !client.publish(topic, false, payload) {
                // Only when the event loop is gone (shutdown): the entry stays queued.
                f.order.pop_back();
                return;
            }
            sent += 1;
        }
        drop(f);
        shared.metrics.tunnel_sent(sent);
        // More may wait than fitted: look again once the client has room.
        if shared.queue.lock().has_unsent() {
            shared.room.notify_one();
        }
    }
}

#[cfg(test)]
mod tests;
