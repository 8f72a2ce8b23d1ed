//! permessage-deflate (RFC 7692) as the Edge C SDK applies it to AlwaysOn payloads.
//!
//! The SDK compresses at the websocket layer, not inside the AlwaysOn format: when the
//! handshake negotiated permessage-deflate it runs raw deflate (no zlib header) with
//! `Z_SYNC_FLUSH` over each payload, keeps one compression context for the connection
//! (context takeover), strips the trailing `00 00 FF FF`, and sets RSV1 on the frames
//! (twMessages.c `twCompressBytes`, twWebsocket.c `twWs_SendMessage`). Use this type
//! only if the websocket library does not already implement the extension.

use super::wire::CodecError;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The empty stored block that ends a sync flush; removed on send, re-added on receive.
pub const SYNC_TRAILER: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// One connection's compression and decompression contexts (context takeover on both).
pub struct PerMessageDeflate {
    deflate: Compress,
    inflate: Decompress,
    max_inflated: usize,
}

impl std::fmt::Debug for PerMessageDeflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerMessageDeflate")
            .field("max_inflated", &self.max_inflated)
            .finish_non_exhaustive()
    }
}

impl PerMessageDeflate {
    /// Fresh contexts; inflated payloads larger than `max_inflated` are rejected.
    pub fn new(max_inflated: usize) -> Self {
        Self {
            deflate: Compress::new(Compression::default(), false),
            inflate: Decompress::new(false),
            max_inflated,
        }
    }

    /// Compresses one payload, continuing the connection's deflate stream.
    pub fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let start = self.deflate.total_in();
        loop {
            let consumed = usize::try_from(self.deflate.total_in() - start).unwrap_or(data.len());
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(64));
            }
            // Errors are impossible for in-memory sync flushes; treat one as "done".
            let status = self.deflate.compress_vec(
                &data[consumed.min(data.len())..],
                &mut out,
                FlushCompress::Sync,
            );
            let consumed = usize::try_from(self.deflate.total_in() - start).unwrap_or(data.len());
            let room_left = out.len() < out.capacity();
            if status.is_err() || (consumed >= data.len() && room_left) {
                break;
            }
        }
        if out.ends_with(&SYNC_TRAILER) {
            out.truncate(out.len() - SYNC_TRAILER.len());
        }
        out
    }

    /// Inflates one payload received with RSV1 set, continuing the inflate stream.
    pub fn decompress(&mut self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut input = Vec::with_capacity(data.len() + SYNC_TRAILER.len());
        input.extend_from_slice(data);
        input.extend_from_slice(&SYNC_TRAILER);
        let mut out: Vec<u8> =
            Vec::with_capacity((data.len() * 4).clamp(64, self.max_inflated.max(64)));
        let start_in = self.inflate.total_in();
        loop {
            let consumed =
                usize::try_from(self.inflate.total_in() - start_in).unwrap_or(usize::MAX);
            if consumed >= input.len() && out.len() < out.capacity() {
                break;
            }
            if out.len() > self.max_inflated {
                return Err(CodecError::Decompress(format!(
                    "inflated size exceeds {} bytes",
                    self.max_inflated
                )));
            }
            if out.capacity() - out.len() < 64 {
                let grow = out.capacity().max(64).min(self.max_inflated + 1);
                out.reserve(grow);
            }
            let before_out = out.len();
            let status = self
                .inflate
                .decompress_vec(
                    &input[consumed.min(input.len())..],
                    &mut out,
                    FlushDecompress::Sync,
                )
                .map_err(|e| CodecError::Decompress(e.to_string()))?;
            let now_consumed =
                usize::try_from(self.inflate.total_in() - start_in).unwrap_or(usize::MAX);
            match status {
                Status::StreamEnd => break,
                Status::BufError if now_consumed == consumed && out.len() == before_out => {
                    if now_consumed >= input.len() {
                        break;
                    }
                    return Err(CodecError::Decompress("inflate made no progress".into()));
                }
                _ => {}
            }
        }
        if out.len() > self.max_inflated {
            return Err(CodecError::Decompress(format!(
                "inflated size exceeds {} bytes",
                self.max_inflated
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
