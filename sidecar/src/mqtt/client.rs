//! The MQTT client behind one face: rumqttc's client ([`Client`], handing over publishes and
//! subscriptions) and its event loop ([`Connection`]), for MQTT 3.1.1 or MQTT 5 (rumqttc's
//! `v5` module, a client of its own), with events and errors in the connector's own terms
//! ([`Event`], [`Disconnect`]), so the connector's rules (the PUBACK ↔ queue mapping, births,
//! reconnects) are written once.
//!
//! What MQTT 5 adds here: the broker is told the largest packet the gateway accepts (it drops a
//! larger command instead of sending it: no poison message), a persistent session is one that
//! does not expire, and a command carrying a response topic is answered there with its
//! correlation data (MQTT 5 request/response, as `mosquitto_rr` sends).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::{v5 as p5, QoS as V5QoS};
use rumqttc::{
    mqttbytes, v5, AsyncClient, ConnectReturnCode, ConnectionError, EventLoop, LastWill,
    MqttOptions, Outgoing, Packet, QoS, StateError, TlsConfiguration, Transport,
};

use super::config::{MqttConfig, MqttVersion};
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
pub enum Client {
    /// MQTT 3.1.1.
    V4(AsyncClient),
    /// MQTT 5.
    V5(v5::AsyncClient),
}

/// The event loop: connects, reconnects when polled again after an error.
pub enum Connection {
    /// MQTT 3.1.1.
    V4(Box<EventLoop>),
    /// MQTT 5.
    V5(Box<v5::EventLoop>),
}

/// Where an MQTT 5 request asked to be answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Its response topic.
    pub topic: String,
    /// Its correlation data, echoed.
    pub correlation: Option<Bytes>,
}

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
        /// MQTT 5: the response topic and correlation data it carries.
        reply: Option<Reply>,
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
        let transport = transport(config)?;
        let endpoint = config.endpoint()?;
        let host = endpoint.websocket.clone().unwrap_or(endpoint.host.clone());
        if config.version == MqttVersion::V5 {
            let mut o = v5::MqttOptions::new(config.client_id.clone(), host, endpoint.port);
            o.set_keep_alive(Duration::from_secs(config.keep_alive_secs))
                .set_clean_start(!config.persistent_session)
                .set_session_expiry_interval(config.persistent_session.then_some(u32::MAX))
                .set_outgoing_inflight_upper_limit(config.max_in_flight)
                .set_max_packet_size(Some(MAX_INCOMING_PACKET as u32))
                .set_last_will(last_will_v5(will))
                .set_transport(transport);
            if let Some(user) = &config.username {
                o.set_credentials(user.clone(), password);
            }
            let (client, eventloop) = v5::AsyncClient::new(o, channel);
            return Ok((Client::V5(client), Connection::V5(Box::new(eventloop))));
        }
        let mut o = MqttOptions::new(config.client_id.clone(), host, endpoint.port);
        o.set_keep_alive(Duration::from_secs(config.keep_alive_secs))
            .set_clean_session(!config.persistent_session)
            .set_inflight(config.max_in_flight)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET)
            .set_last_will(last_will(will));
        if let Some(user) = &config.username {
            o.set_credentials(user.clone(), password);
        }
        o.set_transport(transport);
        let (client, eventloop) = AsyncClient::new(o, channel);
        Ok((Client::V4(client), Connection::V4(Box::new(eventloop))))
    }

    /// Hands over a QoS 1 publish.
    pub fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) -> bool {
        match self {
            Client::V4(c) => c
                .try_publish(topic, QoS::AtLeastOnce, retain, payload)
                .is_ok(),
            Client::V5(c) => c
                .try_publish(topic, V5QoS::AtLeastOnce, retain, payload)
                .is_ok(),
        }
    }

    /// Hands over a QoS 1 answer to an MQTT 5 request: on its response topic, with its
    /// correlation data.
    pub fn publish_reply(&self, reply: &Reply, payload: Vec<u8>) -> bool {
        match self {
            Client::V4(c) => c
                .try_publish(reply.topic.clone(), QoS::AtLeastOnce, false, payload)
                .is_ok(),
            Client::V5(c) => {
                let properties = p5::PublishProperties {
                    correlation_data: reply.correlation.clone(),
                    ..Default::default()
                };
                c.try_publish_with_properties(
                    reply.topic.clone(),
                    V5QoS::AtLeastOnce,
                    false,
                    payload,
                    properties,
                )
                .is_ok()
            }
        }
    }

    /// Hands over a QoS 1 subscription.
    pub fn subscribe(&self, filter: String) {
        match self {
            Client::V4(c) => drop(c.try_subscribe(filter, QoS::AtLeastOnce)),
            Client::V5(c) => drop(c.try_subscribe(filter, V5QoS::AtLeastOnce)),
        }
    }

    /// Hands over a DISCONNECT.
    pub fn disconnect(&self) {
        match self {
            Client::V4(c) => drop(c.try_disconnect()),
            Client::V5(c) => drop(c.try_disconnect()),
        }
    }
}

/// TLS (verified as `server` says, the client certificate when one is set) and websockets.
fn transport(config: &MqttConfig) -> Result<Transport, ConfigError> {
    let endpoint = config.endpoint()?;
    if !endpoint.tls {
        return Ok(if endpoint.websocket.is_some() {
            Transport::Ws
        } else {
            Transport::Tcp
        });
    }
    let tls =
        crate::tunnel::connect::client_config(&config.server, config.client_cert.as_ref(), "mqtt")?;
    let tls = TlsConfiguration::Rustls(Arc::new(tls));
    Ok(if endpoint.websocket.is_some() {
        Transport::Wss(tls)
    } else {
        Transport::Tls(tls)
    })
}

impl Connection {
    /// The next event, or the error that ended the connection (polling again reconnects).
    pub async fn poll(&mut self) -> Result<Event, Lost> {
        use rumqttc::Event as E;
        let eventloop = match self {
            Connection::V4(e) => e,
            Connection::V5(e) => return poll_v5(e).await,
        };
        match eventloop.poll().await {
            Ok(E::Incoming(Packet::ConnAck(_))) => Ok(Event::ConnAck),
            Ok(E::Outgoing(Outgoing::Publish(pkid))) => Ok(Event::PublishOut(pkid)),
            Ok(E::Incoming(Packet::Publish(p))) => Ok(Event::Message {
                topic: p.topic,
                payload: p.payload,
                reply: None,
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
        match self {
            Connection::V4(e) => {
                e.clean();
                e.pending.clear();
            }
            Connection::V5(e) => {
                e.clean();
                e.pending.clear();
            }
        }
    }

    /// Whether the next connection starts a clean session.
    pub fn set_clean(&mut self, clean: bool) {
        match self {
            Connection::V4(e) => {
                e.mqtt_options.set_clean_session(clean);
            }
            Connection::V5(e) => {
                e.options.set_clean_start(clean);
            }
        }
    }

    /// The login of the next connection.
    pub fn set_credentials(&mut self, user: String, password: String) {
        match self {
            Connection::V4(e) => {
                e.mqtt_options.set_credentials(user, password);
            }
            Connection::V5(e) => {
                e.options.set_credentials(user, password);
            }
        }
    }

    /// The last will of the next connection.
    pub fn set_will(&mut self, will: Will) {
        match self {
            Connection::V4(e) => {
                e.mqtt_options.set_last_will(last_will(will));
            }
            Connection::V5(e) => {
                e.options.set_last_will(last_will_v5(will));
            }
        }
    }
}

async fn poll_v5(eventloop: &mut v5::EventLoop) -> Result<Event, Lost> {
    use v5::Event as E;
    match eventloop.poll().await {
        Ok(E::Incoming(p5::Packet::ConnAck(_))) => Ok(Event::ConnAck),
        Ok(E::Outgoing(Outgoing::Publish(pkid))) => Ok(Event::PublishOut(pkid)),
        Ok(E::Incoming(p5::Packet::Publish(p))) => Ok(Event::Message {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            reply: p.properties.as_ref().and_then(|props| {
                props.response_topic.clone().map(|topic| Reply {
                    topic,
                    correlation: props.correlation_data.clone(),
                })
            }),
            payload: p.payload,
        }),
        Ok(E::Incoming(p5::Packet::PubAck(ack))) => Ok(Event::PubAck(ack.pkid)),
        Ok(E::Outgoing(Outgoing::Disconnect)) => Ok(Event::DisconnectOut),
        Ok(_) => Ok(Event::Other),
        Err(e) => Err(Lost {
            why: Disconnect::of_v5(&e),
            error: e.to_string(),
        }),
    }
}

fn last_will((topic, payload, retain): Will) -> LastWill {
    LastWill::new(topic, payload, QoS::AtLeastOnce, retain)
}

fn last_will_v5((topic, payload, retain): Will) -> p5::LastWill {
    p5::LastWill::new(topic, payload, V5QoS::AtLeastOnce, retain, None)
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

    fn of_v5(e: &v5::ConnectionError) -> Disconnect {
        use p5::ConnectReturnCode as C;
        use v5::{ConnectionError as E, StateError as S};
        match e {
            E::ConnectionRefused(C::BadUserNamePassword | C::NotAuthorized)
            | E::MqttState(S::ConnFail {
                reason: C::BadUserNamePassword | C::NotAuthorized,
            }) => Disconnect::Unauthorized,
            E::ConnectionRefused(_) | E::MqttState(S::ConnFail { .. }) => Disconnect::Refused,
            E::Tls(_) => Disconnect::Tls,
            E::Timeout(_) => Disconnect::Timeout,
            E::MqttState(
                S::IncomingPacketTooLarge { .. }
                | S::Deserialization(v5::mqttbytes::Error::PayloadSizeLimitExceeded { .. }),
            ) => Disconnect::Oversized,
            E::MqttState(S::Io(_) | S::ConnectionAborted) => Disconnect::Connection,
            E::MqttState(_) => Disconnect::Protocol,
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
