//! The tunnel through an HTTP proxy (the EMS `proxy` host, port, user and password): a
//! `CONNECT host:port` request on the TCP connection to the proxy, then TLS and the websocket
//! as without a proxy. The proxy's answer is read byte by byte up to its blank line, at most
//! [`MAX_RESPONSE_HEAD`] bytes, so nothing of the TLS stream is consumed and a hostile proxy
//! cannot make the sidecar buffer without bound.

use std::path::Path;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest proxy response head read.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// Why the proxy did not open the tunnel.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Writing the request or reading the answer failed.
    #[error("proxy {proxy}: {source}")]
    Io {
        /// `host:port` of the proxy.
        proxy: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The proxy could not be resolved, connected to, or did not answer `CONNECT` in time.
    #[error("proxy {proxy} unreachable: {reason}")]
    Unreachable {
        /// `host:port` of the proxy.
        proxy: String,
        /// What failed.
        reason: String,
    },
    /// The proxy answered something other than 200.
    #[error("proxy {proxy} refused CONNECT {target}: {status}")]
    Refused {
        /// `host:port` of the proxy.
        proxy: String,
        /// The `host:port` asked for.
        target: String,
        /// The proxy's status line.
        status: String,
    },
    /// The proxy's answer was not HTTP or too long.
    #[error("proxy {proxy}: {reason}")]
    Malformed {
        /// `host:port` of the proxy.
        proxy: String,
        /// What was wrong.
        reason: String,
    },
    /// The credentials file could not be read or has no `user:password` line.
    #[error("proxy credentials {path}: {reason}")]
    Credentials {
        /// The file.
        path: String,
        /// What was wrong (never the content).
        reason: String,
    },
}

/// Reads `user:password` (the first non-empty line) from `path`, as the `Proxy-Authorization`
/// value. Read at every connect, so a rotated Secret is used from the next reconnect on.
pub fn basic_credentials(path: &Path) -> Result<String, ProxyError> {
    let err = |reason: &str| ProxyError::Credentials {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(&e.kind().to_string()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| err("empty"))?;
    if !line.contains(':') {
        return Err(err("expected user:password"));
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(line);
    Ok(format!("Basic {encoded}"))
}

/// Asks the proxy at the other end of `stream` for a tunnel to `target` (`host:port`).
pub async fn connect_through(
    stream: &mut TcpStream,
    proxy: &str,
    target: &str,
    authorization: Option<&str>,
) -> Result<(), ProxyError> {
    let io = |source| ProxyError::Io {
        proxy: proxy.to_owned(),
        source,
    };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = authorization {
        request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_RESPONSE_HEAD {
            return Err(ProxyError::Malformed {
                proxy: proxy.to_owned(),
                reason: format!("response head longer than {MAX_RESPONSE_HEAD} bytes"),
            });
        }
        if stream.read(&mut byte).await.map_err(io)? == 0 {
            return Err(ProxyError::Malformed {
                proxy: proxy.to_owned(),
                reason: "closed before answering CONNECT".into(),
            });
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut parts = status.split_whitespace();
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        return Err(ProxyError::Malformed {
            proxy: proxy.to_owned(),
            reason: format!("not an HTTP answer: {status:?}"),
        });
    }
    if code != "200" {
        return Err(ProxyError::Refused {
            proxy: proxy.to_owned(),
            target: target.to_owned(),
            status,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
