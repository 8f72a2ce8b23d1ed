//! The MQTT client behind one face: rumqttc's client ([`Client`], handing over publishes and
//! subscriptions) and its event loop ([`Connection`]), with events and errors in the connector's
//! own terms ([`Event`], [`Disconnect`]), so the connector's rules (the PUBACK ↔ queue mapping,
//! births, reconnects) are written once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    mqttbytes, AsyncClient, ConnectReturnCode, ConnectionError, EventLoop, LastWill, MqttOptions,
    Outgoing, Packet, QoS, StateError, TlsConfiguration, Transport,
};

use super::config::MqttConfig;
use edgeway_runtime::ConfigError;

/// Largest packet accepted from the broker (a command's parameters): a bound keeps one
/// socket from taking memory.
const MAX_INCOMING_PACKET: usize = 64 * 1024;
/// Largest packet sent: an event's data table can be sizeable.
const MAX_OUTGOING_PACKET: usize = 1024 * 1024;

/// A last will (QoS 1): topic, payload, retained.
pub type Will = (String, Vec<u8>, bool);

/// Hands requests to the event loop (never waits: `false` when its channel is full or gone).
#[derive(Clone)]
pub struct Client(AsyncClient);

/// The event loop: connects, reconnects when polled again after an error.
pub struct Connection(EventLoop);

/// What the event loop reports.
#[derive(Debug)]
pub enum Event {
    /// The broker accepted the connection.
    ConnAck,
    /// A publish was numbered (its packet id) and sent.
    PublishOut(u16),
    /// A message from the broker (a command).
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Bytes,
    },
    /// The broker acknowledged the publish with this packet id.
    PubAck(u16),
    /// Our DISCONNECT went out.
    DisconnectOut,
    /// Anything else (pings, SUBACKs, ...).
    Other,
}

/// A connection ended: why, and the client's own words.
#[derive(Debug)]
pub struct Lost {
    /// The class the connector acts on.
    pub why: Disconnect,
    /// The error, for the log.
    pub error: String,
}

impl Client {
    /// The client and its event loop for `config`, logging in with `password`, `will` set.
    pub fn new(
        config: &MqttConfig,
        password: String,
        will: Will,
        channel: usize,
    ) -> Result<(Client, Connection), ConfigError> {
        let endpoint = config.endpoint()?;
        let host = endpoint.websocket.clone().unwrap_or(endpoint.host.clone());
        let mut o = MqttOptions::new(config.client_id.clone(), host, endpoint.port);
        o.set_keep_alive(Duration::from_secs(config.keep_alive_secs))
            .set_clean_session(!config.persistent_session)
            .set_inflight(config.max_in_flight)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET)
            .set_last_will(last_will(will));
        if let Some(user) = &config.username {
            o.set_credentials(user.clone(), password);
        }
        if endpoint.tls {
            let tls = crate::tunnel::connect::client_config(
                &config.server,
                config.client_cert.as_ref(),
                "mqtt",
            )?;
            let tls = TlsConfiguration::Rustls(Arc::new(tls));
            o.set_transport(if endpoint.websocket.is_some() {
                Transport::Wss(tls)
            } else {
                Transport::Tls(tls)
            });
        } else if endpoint.websocket.is_some() {
            o.set_transport(Transport::Ws);
        }
        let (client, eventloop) = AsyncClient::new(o, channel);
        Ok((Client(client), Connection(eventloop)))
    }

    /// Hands over a QoS 1 publish.
    pub fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) -> bool {
        self.0
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .is_ok()
    }

    /// Hands over a QoS 1 subscription.
    pub fn subscribe(&self, filter: String) {
        let _ = self.0.try_subscribe(filter, QoS::AtLeastOnce);
    }

    /// Hands over a DISCONNECT.
    pub fn disconnect(&self) {
        let _ = self.0.try_disconnect();
    }
}

impl Connection {
    /// The next event, or the error that ended the connection (polling again reconnects).
    pub async fn poll(&mut self) -> Result<Event, Lost> {
        use rumqttc::Event as E;
        match self.0.poll().await {
            Ok(E::Incoming(Packet::ConnAck(_))) => Ok(Event::ConnAck),
            Ok(E::Outgoing(Outgoing::Publish(pkid))) => Ok(Event::PublishOut(pkid)),
            Ok(E::Incoming(Packet::Publish(p))) => Ok(Event::Message {
                topic: p.topic,
                payload: p.payload,
            }),
            Ok(E::Incoming(Packet::PubAck(ack))) => Ok(Event::PubAck(ack.pkid)),
            Ok(E::Outgoing(Outgoing::Disconnect)) => Ok(Event::DisconnectOut),
            Ok(_) => Ok(Event::Other),
            Err(e) => Err(Lost {
                why: Disconnect::of(&e),
                error: e.to_string(),
            }),
        }
    }

    /// Discards what the client kept to resend: the in-flight publishes and whatever still
    /// waits in its request channel (the connector's queue resends what is owed).
    pub fn discard(&mut self) {
        self.0.clean();
        self.0.pending.clear();
    }

    /// Whether the next connection starts a clean session.
    pub fn set_clean(&mut self, clean: bool) {
        self.0.mqtt_options.set_clean_session(clean);
    }

    /// The login of the next connection.
    pub fn set_credentials(&mut self, user: String, password: String) {
        self.0.mqtt_options.set_credentials(user, password);
    }

    /// The last will of the next connection.
    pub fn set_will(&mut self, will: Will) {
        self.0.mqtt_options.set_last_will(last_will(will));
    }
}

fn last_will((topic, payload, retain): Will) -> LastWill {
    LastWill::new(topic, payload, QoS::AtLeastOnce, retain)
}

/// Why a connection ended, in the classes the connector acts on and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// CONNACK: bad user name or password, or not authorized.
    Unauthorized,
    /// CONNACK with another refusal.
    Refused,
    /// The TLS handshake failed.
    Tls,
    /// No answer in time.
    Timeout,
    /// An incoming message over the size bound.
    Oversized,
    /// The broker broke the protocol.
    Protocol,
    /// The network connection failed or ended.
    Connection,
}

impl Disconnect {
    fn of(e: &ConnectionError) -> Disconnect {
        match e {
            ConnectionError::ConnectionRefused(
                ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
            ) => Disconnect::Unauthorized,
            ConnectionError::ConnectionRefused(_) => Disconnect::Refused,
            ConnectionError::Tls(_) => Disconnect::Tls,
            ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => Disconnect::Timeout,
            ConnectionError::MqttState(StateError::Deserialization(
                mqttbytes::Error::PayloadSizeLimitExceeded(_),
            )) => Disconnect::Oversized,
            ConnectionError::MqttState(_) => Disconnect::Protocol,
            _ => Disconnect::Connection,
        }
    }

    /// The `kind` label of the disconnect counter.
    pub fn label(self) -> &'static str {
        match self {
            Disconnect::Unauthorized => "unauthorized",
            Disconnect::Refused => "refused",
            Disconnect::Tls => "tls",
            Disconnect::Timeout => "timeout",
            Disconnect::Oversized => "oversized",
            Disconnect::Protocol => "protocol",
            Disconnect::Connection => "connection",
        }
    }

    /// The connect stage it shows as failing (what the operator's Connected condition reads),
    /// when it is one a user must mend rather than a passing outage.
    pub fn failing_stage(self) -> Option<&'static str> {
        match self {
            Disconnect::Unauthorized => Some("credentials"),
            Disconnect::Tls => Some("tls"),
            _ => None,
        }
    }
}
