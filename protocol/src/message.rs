//! AlwaysOn messages: the 15-byte header and the request, response, auth, bind/unbind
//! and keep-alive bodies (twMessages.c: `twMessage_Send`, `tw*Body_ToStream`,
//! `twMessage_CreateFromStream`, `tw*Body_CreateFromStream`).
//!
//! Header: version (0x01), code, request id (u32 BE), endpoint id (u32 BE),
//! session id (u32 BE), multipart marker (0 = single message).

use super::infotable::InfoTable;
use super::primitive::Primitive;
use super::types::{
    Characteristic, EntityType, Method, StatusCode, WireType, CODE_AUTH, CODE_BIND,
    CODE_KEEP_ALIVE, CODE_UNBIND, PROTOCOL_VERSION,
};
use super::wire::{CodecError, Reader, Writer};

/// Size of the fixed message header (`MSG_HEADER_SIZE`).
pub const HEADER_SIZE: usize = 15;

/// Session id an AUTH message carries before the platform has assigned one (SDK sends -1).
pub const AUTH_SESSION_ID: u32 = 0xFFFF_FFFF;

/// Claim name the SDK uses to authenticate with an application key.
pub const APP_KEY_CLAIM: &str = "appKey";

/// The identifiers every message carries; responses echo the request's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Header {
    /// Correlates a response with its request.
    pub request_id: u32,
    /// Platform-side endpoint; 0 on edge-originated messages.
    pub endpoint_id: u32,
    /// Session assigned in the AUTH response; 0 before auth (AUTH itself uses `AUTH_SESSION_ID`).
    pub session_id: u32,
}

impl Header {
    /// Header for a new edge-originated message.
    pub fn new(request_id: u32) -> Self {
        Self {
            request_id,
            ..Self::default()
        }
    }
}

/// A property read/write, service call or event, sent by either side.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Message identifiers.
    pub header: Header,
    /// GET, PUT, POST or DELETE.
    pub method: Method,
    /// Kind of entity addressed (Thing for edge traffic).
    pub entity_type: EntityType,
    /// Name of the entity (the Thing name).
    pub entity_name: String,
    /// Property, service or event.
    pub characteristic: Characteristic,
    /// Name of the property, service or event.
    pub characteristic_name: String,
    /// Free-form name/value headers (the C SDK never sends any).
    pub headers: Vec<(String, String)>,
    /// Parameters / property value, or none (written as NOTHING).
    pub params: Option<InfoTable>,
}

/// The answer to a request: a status plus optional reason and result table.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Message identifiers, copied from the request.
    pub header: Header,
    /// Status code (>= 0x40).
    pub status: StatusCode,
    /// Optional human-readable reason.
    pub reason: Option<String>,
    /// Result table, or none (written as NOTHING).
    pub content: Option<InfoTable>,
}

/// Authentication with claims (in practice one `appKey` claim).
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    /// Message identifiers.
    pub header: Header,
    /// Claim name/value pairs.
    pub claims: Vec<(String, String)>,
}

/// A gateway's own name and type, sent at the start of BIND/UNBIND bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Gateway thing name.
    pub name: String,
    /// Gateway type string.
    pub type_name: String,
}

/// Binds (or unbinds) things to this connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Bind {
    /// Message identifiers.
    pub header: Header,
    /// Present when this connection is a gateway.
    pub gateway: Option<Gateway>,
    /// Thing names.
    pub names: Vec<String>,
}

/// One complete (non-multipart) AlwaysOn message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Codes 0x01..=0x04.
    Request(Request),
    /// Codes >= 0x40.
    Response(Response),
    /// Code 0x14.
    Auth(Auth),
    /// Code 0x0A.
    Bind(Bind),
    /// Code 0x0B.
    Unbind(Bind),
    /// Code 0x1F, header only (format not confirmed by SDK source; see docs/protocol.md).
    KeepAlive(Header),
}

impl Message {
    /// AUTH with the `appKey` claim, session id -1 and endpoint 0, as `twApi_Authenticate` sends it.
    pub fn auth(request_id: u32, app_key: &str) -> Self {
        Message::Auth(Auth {
            header: Header {
                request_id,
                endpoint_id: 0,
                session_id: AUTH_SESSION_ID,
            },
            claims: vec![(APP_KEY_CLAIM.to_owned(), app_key.to_owned())],
        })
    }

    /// BIND for `names`, optionally announcing this connection as gateway (name, type).
    pub fn bind(request_id: u32, gateway: Option<(&str, &str)>, names: &[&str]) -> Self {
        Message::Bind(Self::bind_body(request_id, gateway, names))
    }

    /// UNBIND for `names`; same body as BIND.
    pub fn unbind(request_id: u32, gateway: Option<(&str, &str)>, names: &[&str]) -> Self {
        Message::Unbind(Self::bind_body(request_id, gateway, names))
    }

    fn bind_body(request_id: u32, gateway: Option<(&str, &str)>, names: &[&str]) -> Bind {
        Bind {
            header: Header::new(request_id),
            gateway: gateway.map(|(name, type_name)| Gateway {
                name: name.to_owned(),
                type_name: type_name.to_owned(),
            }),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    /// Header-only KEEP_ALIVE (the C SDK keeps connections alive with websocket pings instead).
    pub fn keep_alive(request_id: u32) -> Self {
        Message::KeepAlive(Header::new(request_id))
    }

    /// A request on a Thing (the common case for edge traffic).
    pub fn thing_request(
        request_id: u32,
        method: Method,
        thing: &str,
        characteristic: Characteristic,
        name: &str,
        params: Option<InfoTable>,
    ) -> Self {
        Message::Request(Request {
            header: Header::new(request_id),
            method,
            entity_type: EntityType::Thing,
            entity_name: thing.to_owned(),
            characteristic,
            characteristic_name: name.to_owned(),
            headers: Vec::new(),
            params,
        })
    }

    /// POST to a Thing's service with a parameter table (`twApi_InvokeService`).
    pub fn invoke_service(
        request_id: u32,
        thing: &str,
        service: &str,
        params: Option<InfoTable>,
    ) -> Self {
        Self::thing_request(
            request_id,
            Method::Post,
            thing,
            Characteristic::Services,
            service,
            params,
        )
    }

    /// POST to a Thing's event with its data (`twApi_FireEvent`).
    pub fn fire_event(
        request_id: u32,
        thing: &str,
        event: &str,
        params: Option<InfoTable>,
    ) -> Self {
        Self::thing_request(
            request_id,
            Method::Post,
            thing,
            Characteristic::Events,
            event,
            params,
        )
    }

    /// GET of a Thing's property, no parameters (`twApi_ReadProperty`).
    pub fn read_property(request_id: u32, thing: &str, property: &str) -> Self {
        Self::thing_request(
            request_id,
            Method::Get,
            thing,
            Characteristic::Properties,
            property,
            None,
        )
    }

    /// PUT of a Thing's property, value wrapped in a one-field table named after the property.
    pub fn write_property(request_id: u32, thing: &str, property: &str, value: Primitive) -> Self {
        let params = InfoTable::from_primitive(property, value);
        Self::thing_request(
            request_id,
            Method::Put,
            thing,
            Characteristic::Properties,
            property,
            Some(params),
        )
    }

    /// A response with explicit identifiers.
    pub fn response(header: Header, status: StatusCode, content: Option<InfoTable>) -> Self {
        Message::Response(Response {
            header,
            status,
            reason: None,
            content,
        })
    }

    /// The response to `request`, echoing its request, endpoint and session ids.
    pub fn reply_to(request: &Request, status: StatusCode, content: Option<InfoTable>) -> Self {
        Self::response(request.header, status, content)
    }

    /// The identifiers of any message.
    pub fn header(&self) -> &Header {
        match self {
            Message::Request(m) => &m.header,
            Message::Response(m) => &m.header,
            Message::Auth(m) => &m.header,
            Message::Bind(m) | Message::Unbind(m) => &m.header,
            Message::KeepAlive(h) => h,
        }
    }

    /// Mutable identifiers, e.g. to stamp the session id before sending.
    pub fn header_mut(&mut self) -> &mut Header {
        match self {
            Message::Request(m) => &mut m.header,
            Message::Response(m) => &mut m.header,
            Message::Auth(m) => &mut m.header,
            Message::Bind(m) | Message::Unbind(m) => &mut m.header,
            Message::KeepAlive(h) => h,
        }
    }

    /// Sets the session id, as the SDK does for every non-AUTH message after authenticating.
    pub fn with_session(mut self, session_id: u32) -> Self {
        self.header_mut().session_id = session_id;
        self
    }

    /// The message code byte.
    pub fn code(&self) -> u8 {
        match self {
            Message::Request(m) => m.method.code(),
            Message::Response(m) => m.status.code(),
            Message::Auth(_) => CODE_AUTH,
            Message::Bind(_) => CODE_BIND,
            Message::Unbind(_) => CODE_UNBIND,
            Message::KeepAlive(_) => CODE_KEEP_ALIVE,
        }
    }

    /// Short name of the message kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Request(_) => "request",
            Message::Response(_) => "response",
            Message::Auth(_) => "auth",
            Message::Bind(_) => "bind",
            Message::Unbind(_) => "unbind",
            Message::KeepAlive(_) => "keep-alive",
        }
    }

    /// The complete single-frame encoding (header with multipart marker 0, then body).
    ///
    /// # Panics
    /// On values the format cannot express: more than 255 request headers or auth claims,
    /// more than 65535 bind names, fields, aspects or row values, strings over 2 GiB.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        write_header(&mut w, self.code(), self.header(), false);
        self.encode_body(&mut w);
        w.into_bytes()
    }

    /// Writes the body only (what follows the header); used by multipart splitting.
    pub fn encode_body(&self, w: &mut Writer) {
        match self {
            Message::Request(m) => {
                w.u8(m.entity_type.code());
                w.string(&m.entity_name);
                w.u8(m.characteristic.code());
                w.string(&m.characteristic_name);
                w.u8(u8::try_from(m.headers.len()).expect("too many request headers"));
                for (k, v) in &m.headers {
                    w.string(k);
                    w.string(v);
                }
                write_content(w, m.params.as_ref());
            }
            Message::Response(m) => {
                match &m.reason {
                    Some(reason) => {
                        w.u8(1);
                        w.string(reason);
                    }
                    None => w.u8(0),
                }
                write_content(w, m.content.as_ref());
            }
            Message::Auth(m) => {
                w.u8(u8::try_from(m.claims.len()).expect("too many claims"));
                for (k, v) in &m.claims {
                    w.string(k);
                    w.string(v);
                }
            }
            Message::Bind(m) | Message::Unbind(m) => {
                match &m.gateway {
                    Some(g) => {
                        w.u8(1);
                        w.string(&g.name);
                        w.string(&g.type_name);
                    }
                    None => w.u8(0),
                }
                w.u16(u16::try_from(m.names.len()).expect("too many bind names"));
                for n in &m.names {
                    w.string(n);
                }
            }
            Message::KeepAlive(_) => {}
        }
    }

    /// The message code and header of a frame whose body may not decode, so that a receiver
    /// can fail the request an undecodable response answers.
    pub fn peek_header(bytes: &[u8]) -> Option<(u8, Header)> {
        let mut r = Reader::new(bytes);
        read_header(&mut r)
            .ok()
            .map(|(code, header, _)| (code, header))
    }

    /// Decodes one complete single-frame message; multipart chunks give `MultipartFrame`. Zero
    /// bytes after the message are accepted as padding, as edge SDKs send them.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes);
        let (code, header, multipart) = read_header(&mut r)?;
        if multipart {
            return Err(CodecError::MultipartFrame);
        }
        let msg = decode_body(&mut r, code, header)?;
        r.finish_padded()?;
        Ok(msg)
    }
}

/// Writes the 15-byte header.
pub(crate) fn write_header(w: &mut Writer, code: u8, h: &Header, multipart: bool) {
    w.u8(PROTOCOL_VERSION);
    w.u8(code);
    w.u32(h.request_id);
    w.u32(h.endpoint_id);
    w.u32(h.session_id);
    w.u8(u8::from(multipart));
}

/// Reads the 15-byte header: (code, ids, multipart marker). The code is validated.
pub(crate) fn read_header(r: &mut Reader<'_>) -> Result<(u8, Header, bool), CodecError> {
    let version = r.u8()?;
    if version != PROTOCOL_VERSION {
        return Err(CodecError::UnsupportedVersion { version });
    }
    let offset = r.offset();
    let code = r.u8()?;
    let known = Method::from_code(code).is_some()
        || StatusCode::from_code(code).is_some()
        || matches!(code, CODE_AUTH | CODE_BIND | CODE_UNBIND | CODE_KEEP_ALIVE);
    if !known {
        return Err(CodecError::UnknownMessageCode { offset, code });
    }
    let header = Header {
        request_id: r.u32()?,
        endpoint_id: r.u32()?,
        session_id: r.u32()?,
    };
    let multipart = r.u8()? != 0;
    Ok((code, header, multipart))
}

/// Writes INFOTABLE + table, or NOTHING, as request params / response content.
fn write_content(w: &mut Writer, table: Option<&InfoTable>) {
    match table {
        Some(t) => {
            w.i8(WireType::InfoTable.code());
            t.encode(w);
        }
        None => w.i8(WireType::Nothing.code()),
    }
}

/// Reads request params / response content: NOTHING or INFOTABLE.
fn read_content(r: &mut Reader<'_>) -> Result<Option<InfoTable>, CodecError> {
    let offset = r.offset();
    let code = r.i8()?;
    match WireType::from_code(code) {
        Some(WireType::Nothing) => Ok(None),
        Some(WireType::InfoTable) => Ok(Some(InfoTable::decode(r, 1)?)),
        Some(other) => Err(CodecError::UnexpectedContentType {
            offset,
            name: other.name(),
        }),
        None => Err(CodecError::UnknownBaseType { offset, code }),
    }
}

/// Decodes the body for a validated `code`; the caller checks for trailing bytes.
pub(crate) fn decode_body(
    r: &mut Reader<'_>,
    code: u8,
    header: Header,
) -> Result<Message, CodecError> {
    if let Some(method) = Method::from_code(code) {
        let entity_type = EntityType::from_code(r.u8()?);
        let entity_name = r.string()?;
        let characteristic = Characteristic::from_code(r.u8()?);
        let characteristic_name = r.string()?;
        let count = usize::from(r.u8()?);
        let mut headers = Vec::with_capacity(count.min(r.remaining()));
        for _ in 0..count {
            headers.push((r.string()?, r.string()?));
        }
        let params = read_content(r)?;
        return Ok(Message::Request(Request {
            header,
            method,
            entity_type,
            entity_name,
            characteristic,
            characteristic_name,
            headers,
            params,
        }));
    }
    if let Some(status) = StatusCode::from_code(code) {
        let reason = if r.u8()? != 0 {
            Some(r.string()?)
        } else {
            None
        };
        let content = read_content(r)?;
        return Ok(Message::Response(Response {
            header,
            status,
            reason,
            content,
        }));
    }
    match code {
        CODE_AUTH => {
            let count = usize::from(r.u8()?);
            let mut claims = Vec::with_capacity(count.min(r.remaining()));
            for _ in 0..count {
                claims.push((r.string()?, r.string()?));
            }
            Ok(Message::Auth(Auth { header, claims }))
        }
        CODE_BIND | CODE_UNBIND => {
            let gateway = if r.u8()? != 0 {
                Some(Gateway {
                    name: r.string()?,
                    type_name: r.string()?,
                })
            } else {
                None
            };
            let count = usize::from(r.u16()?);
            let mut names = Vec::with_capacity(count.min(r.remaining()));
            for _ in 0..count {
                names.push(r.string()?);
            }
            let body = Bind {
                header,
                gateway,
                names,
            };
            Ok(if code == CODE_BIND {
                Message::Bind(body)
            } else {
                Message::Unbind(body)
            })
        }
        CODE_KEEP_ALIVE => Ok(Message::KeepAlive(header)),
        _ => Err(CodecError::UnknownMessageCode {
            offset: r.offset(),
            code,
        }),
    }
}
