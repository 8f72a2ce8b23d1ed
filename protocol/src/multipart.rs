//! Multipart messages: splitting large requests/responses into chunks and reassembling
//! incoming chunks (twMessages.c: `twMessage_Send`, `twMultipartBody_CreateFromStream`,
//! `twMultipartMessageStore_AddMessage`).
//!
//! A chunk is the 15-byte header with marker 1, then chunk id (1-based), chunk count and
//! the sender's configured chunk size (three u16 BE). Request chunks then repeat the
//! entity type byte and entity name; the rest is the next slice of the body. Chunk 1's
//! slice starts at the body's beginning, so there the entity info is the body's own.

use super::message::{decode_body, read_header, write_header, Message, HEADER_SIZE};
use super::types::{Method, StatusCode, CODE_AUTH, CODE_BIND, CODE_KEEP_ALIVE, CODE_UNBIND};
use super::wire::{string_len, CodecError, Reader, Writer};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Size of the multipart sub-header (`MULTIPART_MSG_HEADER_SIZE`).
pub const MULTIPART_HEADER_SIZE: usize = 6;

/// SDK default chunk size; "should be the same as the server side configuration".
pub const DEFAULT_CHUNK_SIZE: usize = 8192;

/// SDK (2014 twConfig.h) default limit for a complete message.
pub const SDK_MAX_MESSAGE_SIZE: usize = 16384;

/// Bytes the SDK reserves per chunk when permessage-deflate is on (sync trailer).
pub const DEFLATE_TRAILER_SIZE: usize = 4;

/// Splits `msg` into websocket payloads no larger than `chunk_size`.
///
/// Like the SDK, a message goes multipart when `body + 15 + 6 > chunk_size`; otherwise
/// the single-frame encoding is returned. Only requests and responses can be split.
pub fn split(msg: &Message, chunk_size: usize) -> Result<Vec<Vec<u8>>, CodecError> {
    split_with(msg, chunk_size, false)
}

/// As [`split`], also reserving the 4 deflate trailer bytes per chunk when `deflate` is on.
pub fn split_with(
    msg: &Message,
    chunk_size: usize,
    deflate: bool,
) -> Result<Vec<Vec<u8>>, CodecError> {
    let mut w = Writer::with_capacity(256);
    write_header(&mut w, msg.code(), msg.header(), false);
    msg.encode_body(&mut w);
    split_encoded_with(w.into_bytes(), chunk_size, deflate)
}

/// As [`split`], for a message already encoded as one frame (header with marker 0, then body):
/// callers that encode straight into bytes, like the tunnel's update path, split without
/// building a [`Message`] or encoding twice.
pub fn split_encoded(single: Vec<u8>, chunk_size: usize) -> Result<Vec<Vec<u8>>, CodecError> {
    split_encoded_with(single, chunk_size, false)
}

/// As [`split_encoded`], also reserving the deflate trailer bytes when `deflate` is on.
pub fn split_encoded_with(
    single: Vec<u8>,
    chunk_size: usize,
    deflate: bool,
) -> Result<Vec<Vec<u8>>, CodecError> {
    if single.len() + MULTIPART_HEADER_SIZE <= chunk_size {
        return Ok(vec![single]);
    }
    let mut r = Reader::new(&single);
    let (code, header, multipart) = read_header(&mut r)?;
    if multipart {
        return Err(CodecError::MultipartFrame);
    }
    let body = &single[HEADER_SIZE..];
    let chunk_size_field = u16::try_from(chunk_size)
        .map_err(|_| CodecError::BadChunk(format!("chunk size {chunk_size} exceeds 65535")))?;
    // Request chunks after the first repeat the entity type and name: the body's first bytes.
    let prefix: &[u8] = if Method::from_code(code).is_some() {
        let mut br = Reader::new(body);
        br.u8()?;
        br.string()?;
        &body[..br.offset()]
    } else if StatusCode::from_code(code).is_some() {
        &[]
    } else {
        return Err(CodecError::NotSplittable {
            kind: kind_of_code(code),
            size: single.len(),
        });
    };
    let overhead = HEADER_SIZE
        + MULTIPART_HEADER_SIZE
        + prefix.len()
        + if deflate { DEFLATE_TRAILER_SIZE } else { 0 };
    // Chunk 1 must hold at least the entity info it starts with (receivers parse it there).
    if chunk_size <= overhead || chunk_size - overhead < prefix.len() {
        return Err(CodecError::ChunkSizeTooSmall {
            chunk_size,
            overhead: overhead + prefix.len(),
        });
    }
    let effective = chunk_size - overhead;
    let count = body.len().div_ceil(effective);
    let count = u16::try_from(count).map_err(|_| CodecError::MessageTooLarge {
        size: body.len(),
        max: effective * usize::from(u16::MAX),
    })?;
    let mut frames = Vec::with_capacity(usize::from(count));
    for (i, slice) in body.chunks(effective).enumerate() {
        let mut w = Writer::with_capacity(overhead + slice.len());
        write_header(&mut w, code, &header, true);
        w.u16(u16::try_from(i + 1).unwrap_or(u16::MAX));
        w.u16(count);
        w.u16(chunk_size_field);
        if i > 0 {
            w.bytes(prefix);
        }
        w.bytes(slice);
        frames.push(w.into_bytes());
    }
    Ok(frames)
}

/// The [`Message::kind`] of a message code that is neither a request nor a response.
fn kind_of_code(code: u8) -> &'static str {
    match code {
        CODE_AUTH => "auth",
        CODE_BIND => "bind",
        CODE_UNBIND => "unbind",
        CODE_KEEP_ALIVE => "keep-alive",
        _ => "unknown",
    }
}

/// Limits that keep a hostile peer from exhausting memory with partial messages.
#[derive(Debug, Clone)]
pub struct ReassemblerConfig {
    /// Largest reassembled message (and largest `count * chunk size` announced).
    pub max_message_size: usize,
    /// Largest chunk count accepted.
    pub max_chunks: u16,
    /// Most partial messages held at once.
    pub max_pending: usize,
    /// Most bytes all partial messages may hold together: without it 64 partials of 1 MiB
    /// each could be held per connection (two unauthenticated clients: 816 MB).
    pub max_pending_bytes: usize,
    /// How long a partial message may wait for its missing chunks.
    pub timeout: Duration,
}

impl Default for ReassemblerConfig {
    fn default() -> Self {
        Self {
            max_message_size: 1024 * 1024,
            max_chunks: 1024,
            max_pending: 64,
            max_pending_bytes: 2 * 1024 * 1024,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Partial message state, keyed by request id and direction.
#[derive(Debug)]
struct Partial {
    code: u8,
    count: u16,
    chunks: Vec<Option<Vec<u8>>>,
    received: usize,
    bytes: usize,
    prefix: Option<Vec<u8>>,
    deadline: Instant,
}

/// Collects multipart chunks and yields complete messages; single frames pass straight through.
#[derive(Debug, Default)]
pub struct Reassembler {
    config: ReassemblerConfig,
    pending: HashMap<(u32, bool), Partial>,
}

impl Reassembler {
    /// A reassembler with the given limits.
    pub fn new(config: ReassemblerConfig) -> Self {
        Self {
            config,
            pending: HashMap::new(),
        }
    }

    /// Number of partial messages currently held.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Drops partial messages whose deadline has passed; returns how many were dropped.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.pending.len();
        self.pending.retain(|_, p| p.deadline > now);
        before - self.pending.len()
    }

    /// Feeds one websocket payload; returns a message once one is complete.
    pub fn push(&mut self, frame: &[u8], now: Instant) -> Result<Option<Message>, CodecError> {
        self.expire(now);
        let mut r = Reader::new(frame);
        let (code, header, multipart) = read_header(&mut r)?;
        if !multipart {
            return Message::decode(frame).map(Some);
        }
        let is_request = Method::from_code(code).is_some();
        if !is_request && StatusCode::from_code(code).is_none() {
            return Err(CodecError::BadChunk(format!(
                "message code {code:#04x} cannot be multipart"
            )));
        }
        let id = r.u16()?;
        let count = r.u16()?;
        let chunk_size = r.u16()?;
        let prefix_start = r.offset();
        if is_request {
            r.u8()?;
            r.string()?;
        }
        let prefix = frame[prefix_start..r.offset()].to_vec();
        let data = r.rest();
        if count == 0 || id == 0 || id > count {
            return Err(CodecError::BadChunk(format!("chunk {id} of {count}")));
        }
        if count > self.config.max_chunks {
            return Err(CodecError::BadChunk(format!(
                "{count} chunks exceed the limit of {}",
                self.config.max_chunks
            )));
        }
        let announced = usize::from(count) * usize::from(chunk_size);
        if announced > self.config.max_message_size {
            return Err(CodecError::MessageTooLarge {
                size: announced,
                max: self.config.max_message_size,
            });
        }
        let key = (header.request_id, !is_request);
        if !self.pending.contains_key(&key) && self.pending.len() >= self.config.max_pending {
            return Err(CodecError::TooManyPartials {
                limit: self.config.max_pending,
            });
        }
        let deadline = now + self.config.timeout;
        let partial = self.pending.entry(key).or_insert_with(|| Partial {
            code,
            count,
            chunks: vec![None; usize::from(count)],
            received: 0,
            bytes: 0,
            prefix: None,
            deadline,
        });
        if partial.code != code || partial.count != count {
            self.pending.remove(&key);
            return Err(CodecError::BadChunk(format!(
                "chunk {id} disagrees with earlier chunks of request {}",
                header.request_id
            )));
        }
        let slot = usize::from(id - 1);
        if let Some(old) = partial.chunks[slot].take() {
            partial.received -= 1;
            partial.bytes -= old.len();
        }
        partial.bytes += data.len();
        let held = partial.bytes;
        if held <= self.config.max_message_size {
            let total: usize = self.pending.values().map(|p| p.bytes).sum();
            if total > self.config.max_pending_bytes {
                self.pending.remove(&key);
                return Err(CodecError::PendingTooLarge {
                    size: total,
                    max: self.config.max_pending_bytes,
                });
            }
        }
        let Some(partial) = self.pending.get_mut(&key) else {
            return Ok(None);
        };
        if partial.bytes > self.config.max_message_size {
            let size = partial.bytes;
            self.pending.remove(&key);
            return Err(CodecError::MessageTooLarge {
                size,
                max: self.config.max_message_size,
            });
        }
        if id == 1 {
            partial.prefix = Some(prefix);
        }
        partial.chunks[slot] = Some(data.to_vec());
        partial.received += 1;
        if partial.received < usize::from(partial.count) {
            return Ok(None);
        }
        let Some(done) = self.pending.remove(&key) else {
            return Ok(None);
        };
        let mut body = done.prefix.unwrap_or_default();
        for chunk in done.chunks.into_iter().flatten() {
            body.extend_from_slice(&chunk);
        }
        let mut br = Reader::new(&body);
        let msg = decode_body(&mut br, code, header)?;
        br.finish_padded()?;
        Ok(Some(msg))
    }
}

/// Encoded size of a request chunk's repeated entity info, for callers sizing payloads.
pub fn request_prefix_len(entity_name: &str) -> usize {
    1 + string_len(entity_name)
}
