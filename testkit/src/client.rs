//! A small HTTP/1.1 client over plain TCP or TLS, for talking to the servers under test.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Opens a TLS connection to `addr`, verifying the name `localhost`.
pub async fn connect(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// An HTTP/1.1 client bound to one connection.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

/// A received response.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

impl Conn {
    /// HTTP/1.1 over an established stream.
    pub async fn over<S>(stream: S) -> std::io::Result<Conn>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    /// Connects over TLS; the error is the TLS or HTTP failure.
    pub async fn tls(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Conn> {
        Conn::over(connect(addr, cfg).await?).await
    }

    /// Connects over plain TCP.
    pub async fn plain(addr: SocketAddr) -> std::io::Result<Conn> {
        Conn::over(TcpStream::connect(addr).await?).await
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Resp, hyper::Error> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        // hyper refuses a request until the connection has finished the previous exchange.
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A GET with the given headers.
    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp, hyper::Error> {
        self.send("GET", path, headers, "").await
    }
}

/// One request on a new TLS connection; `Err` when the handshake or the request fails.
pub async fn request(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Resp, String> {
    let mut c = Conn::tls(addr, cfg).await.map_err(|e| e.to_string())?;
    c.send(method, path, headers, body)
        .await
        .map_err(|e| e.to_string())
}

/// One request on a new plain connection; panics when it fails.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut c = Conn::plain(addr).await.unwrap();
    c.send(method, path, headers, body).await.unwrap()
}

/// A plain GET on a new connection (admin ports, the platform's REST API).
pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    http(addr, "GET", path, &[], "").await
}

/// An `Authorization: Basic` value.
pub fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}
