//! Byte-level reader and writer for the AlwaysOn protocol, plus the codec's error type.
//!
//! Every multi-byte integer and float is big-endian ("network order"): the Edge C SDK
//! byte-swaps on little-endian hosts before writing (`swapbytes` in twBaseTypes.c).
//! Strings carry a length prefix of one byte when shorter than 128 bytes, otherwise four
//! bytes big-endian with the top bit of the first byte set as a marker (`stringToStream`).

use bytes::BufMut;

/// Nesting limit for INFOTABLE / VARIANT values, so hostile input cannot overflow the stack.
pub const MAX_DEPTH: usize = 16;

/// Largest string length the 4-byte prefix can express (31 bits).
pub const MAX_STRING_LEN: usize = 0x7FFF_FFFF;

/// Everything that can go wrong while decoding (or splitting / reassembling) AlwaysOn bytes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// The input ended before a field was complete.
    #[error("truncated input at offset {offset}: needed {needed} more byte(s), {available} left")]
    Truncated {
        /// Offset of the field that could not be read.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A string or blob declared more bytes than the input holds.
    #[error("length {len} at offset {offset} exceeds the {remaining} byte(s) remaining")]
    LengthTooLarge {
        /// Offset of the length prefix.
        offset: usize,
        /// Declared length.
        len: usize,
        /// Bytes remaining after the prefix.
        remaining: usize,
    },
    /// A string was not valid UTF-8.
    #[error("string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Offset of the string's length prefix.
        offset: usize,
    },
    /// The header's version byte is not 0x01.
    #[error("unsupported protocol version {version:#04x} (expected 0x01)")]
    UnsupportedVersion {
        /// The version byte received.
        version: u8,
    },
    /// The header's code byte is none of the known methods or a status code.
    #[error("unknown message code {code:#04x} at offset {offset}")]
    UnknownMessageCode {
        /// Offset of the code byte.
        offset: usize,
        /// The code byte.
        code: u8,
    },
    /// A base-type byte the SDK does not define.
    #[error("unknown base type code {code} at offset {offset}")]
    UnknownBaseType {
        /// Offset of the type byte.
        offset: usize,
        /// The type code (signed: NOTHING is -1).
        code: i8,
    },
    /// A base type that exists but has no binary encoding in the Edge SDK (TIMESPAN, SCHEDULE).
    #[error("base type {name} at offset {offset} has no AlwaysOn binary encoding")]
    UnsupportedBaseType {
        /// Offset of the type byte (0 when encoding).
        offset: usize,
        /// The base type's name.
        name: &'static str,
    },
    /// A request/response body announced content of a type other than INFOTABLE or NOTHING.
    #[error("unexpected content type {name} at offset {offset} (expected INFOTABLE or NOTHING)")]
    UnexpectedContentType {
        /// Offset of the content type byte.
        offset: usize,
        /// Name of the announced type.
        name: &'static str,
    },
    /// INFOTABLE / VARIANT values nested deeper than [`MAX_DEPTH`].
    #[error("values nested deeper than {MAX_DEPTH} levels at offset {offset}")]
    TooDeep {
        /// Offset where the limit was hit.
        offset: usize,
    },
    /// Bytes were left over after a complete message.
    #[error("{count} trailing byte(s) after a complete message at offset {offset}")]
    TrailingBytes {
        /// Offset of the first unread byte.
        offset: usize,
        /// How many bytes were left.
        count: usize,
    },
    /// `Message::decode` was given one chunk of a multipart message.
    #[error("frame is one chunk of a multipart message; feed it to a Reassembler")]
    MultipartFrame,
    /// A multipart sub-header is inconsistent (chunk id 0 or beyond the count, count 0, ...).
    #[error("bad multipart chunk: {0}")]
    BadChunk(String),
    /// A (re)assembled message would exceed the configured maximum size.
    #[error("message of {size} bytes exceeds the maximum of {max}")]
    MessageTooLarge {
        /// Size (or announced size) of the message.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
    /// Too many partial multipart messages are pending at once.
    #[error("too many pending multipart messages (limit {limit})")]
    TooManyPartials {
        /// Configured limit.
        limit: usize,
    },
    /// The partial multipart messages held together exceed their byte limit.
    #[error("pending multipart messages hold {size} bytes (limit {max})")]
    PendingTooLarge {
        /// Bytes held, counting the chunk that crossed the limit.
        size: usize,
        /// Configured limit.
        max: usize,
    },
    /// The chunk size given to `split` cannot hold the headers plus at least one body byte.
    #[error("chunk size {chunk_size} is too small (need more than {overhead} bytes of headers)")]
    ChunkSizeTooSmall {
        /// The chunk size asked for.
        chunk_size: usize,
        /// Bytes taken by the headers in every chunk.
        overhead: usize,
    },
    /// Only requests and responses can be split into multipart chunks.
    #[error("a {kind} message of {size} bytes does not fit one chunk and cannot be split")]
    NotSplittable {
        /// Message kind.
        kind: &'static str,
        /// Encoded size.
        size: usize,
    },
    /// permessage-deflate data could not be inflated, or inflated past the limit.
    #[error("decompression failed: {0}")]
    Decompress(String),
    /// A JSON value does not fit the base type it is converted to.
    #[error("JSON value does not fit {expected}: {got}")]
    Json {
        /// Base type expected.
        expected: &'static str,
        /// What was found instead.
        got: String,
    },
}

impl CodecError {
    /// A fixed name of the error's kind, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            CodecError::Truncated { .. } => "truncated",
            CodecError::LengthTooLarge { .. } => "lengthTooLarge",
            CodecError::InvalidUtf8 { .. } => "invalidUtf8",
            CodecError::UnsupportedVersion { .. } => "unsupportedVersion",
            CodecError::UnknownMessageCode { .. } => "unknownMessageCode",
            CodecError::UnknownBaseType { .. } => "unknownBaseType",
            CodecError::UnsupportedBaseType { .. } => "unsupportedBaseType",
            CodecError::UnexpectedContentType { .. } => "unexpectedContentType",
            CodecError::TooDeep { .. } => "tooDeep",
            CodecError::TrailingBytes { .. } => "trailingBytes",
            CodecError::MultipartFrame => "multipartFrame",
            CodecError::BadChunk(_) => "badChunk",
            CodecError::MessageTooLarge { .. } => "messageTooLarge",
            CodecError::TooManyPartials { .. } => "tooManyPartials",
            CodecError::PendingTooLarge { .. } => "pendingTooLarge",
            CodecError::ChunkSizeTooSmall { .. } => "chunkSizeTooSmall",
            CodecError::NotSplittable { .. } => "notSplittable",
            CodecError::Decompress(_) => "decompress",
            CodecError::Json { .. } => "json",
        }
    }
}

/// Bounds-checked cursor over untrusted input; never panics, never over-allocates.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Current offset from the start of the input, for error messages.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Like [`finish`](Self::finish), but zero bytes after a complete message are padding, not
    /// an error: the C SDK sizes an empty InfoTable cell as 2 bytes and writes 1, and sends the
    /// message at the size it computed (docs/protocol.md, "Padding"). Non-zero trailing bytes
    /// are still `TrailingBytes`. Returns how many padding bytes there were.
    pub fn finish_padded(&self) -> Result<usize, CodecError> {
        let rest = &self.buf[self.pos..];
        if rest.iter().all(|&b| b == 0) {
            Ok(rest.len())
        } else {
            Err(CodecError::TrailingBytes {
                offset: self.pos,
                count: rest.len(),
            })
        }
    }

    /// Errors with `TrailingBytes` unless the input is fully consumed.
    pub fn finish(&self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(CodecError::TrailingBytes {
                offset: self.pos,
                count,
            }),
        }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.remaining() {
            return Err(CodecError::Truncated {
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Takes everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads one unsigned byte.
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads one signed byte (base type codes are signed: NOTHING is -1).
    pub fn i8(&mut self) -> Result<i8, CodecError> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u16.
    pub fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian u32.
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian i32.
    pub fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian i64.
    pub fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian IEEE-754 double.
    pub fn f64(&mut self) -> Result<f64, CodecError> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    /// Reads a length-prefixed UTF-8 string (1-byte or marked 4-byte prefix).
    pub fn string(&mut self) -> Result<String, CodecError> {
        let start = self.pos;
        let first = self.u8()?;
        let len = if first & 0x80 == 0 {
            usize::from(first)
        } else {
            let rest = self.array::<3>()?;
            let len = u32::from_be_bytes([first & 0x7F, rest[0], rest[1], rest[2]]);
            usize::try_from(len).unwrap_or(usize::MAX)
        };
        let bytes = self.sized(start, len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::InvalidUtf8 { offset: start })
    }

    /// Reads a BLOB/IMAGE payload: 4-byte big-endian length (no marker bit), then bytes.
    pub fn blob(&mut self) -> Result<Vec<u8>, CodecError> {
        let start = self.pos;
        let len = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        Ok(self.sized(start, len)?.to_vec())
    }

    /// Takes `len` bytes announced by a prefix at `prefix_offset`, checking before allocating.
    fn sized(&mut self, prefix_offset: usize, len: usize) -> Result<&'a [u8], CodecError> {
        if len > self.remaining() {
            return Err(CodecError::LengthTooLarge {
                offset: prefix_offset,
                len,
                remaining: self.remaining(),
            });
        }
        self.take(len)
    }
}

/// Growable output buffer with the protocol's big-endian and string encodings.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `capacity` bytes, to avoid regrowing for small messages.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Number of bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    /// Appends one signed byte.
    pub fn i8(&mut self, v: i8) {
        self.buf.put_i8(v);
    }

    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.put_u16(v);
    }

    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    /// Appends a big-endian i32.
    pub fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    /// Appends a big-endian i64.
    pub fn i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }

    /// Appends a big-endian IEEE-754 double.
    pub fn f64(&mut self, v: f64) {
        self.buf.put_f64(v);
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.put_slice(v);
    }

    /// Appends a string with its length prefix.
    ///
    /// # Panics
    /// If the string is longer than [`MAX_STRING_LEN`] bytes (2 GiB), which the
    /// protocol cannot express; such a string could never fit a message anyway.
    pub fn string(&mut self, v: &str) {
        let len = v.len();
        if len < 128 {
            self.buf.put_u8(len as u8);
        } else {
            assert!(len <= MAX_STRING_LEN, "string too long for AlwaysOn");
            self.buf.put_u32(len as u32 | 0x8000_0000);
        }
        self.buf.put_slice(v.as_bytes());
    }

    /// Appends a BLOB/IMAGE payload: 4-byte length without marker, then the bytes.
    ///
    /// # Panics
    /// If the blob is 4 GiB or larger.
    pub fn blob(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).expect("blob too long for AlwaysOn");
        self.buf.put_u32(len);
        self.buf.put_slice(v);
    }
}

/// Encoded size of a string including its prefix; used to size multipart chunks.
pub fn string_len(v: &str) -> usize {
    v.len() + if v.len() < 128 { 1 } else { 4 }
}

#[cfg(test)]
mod tests;
