//! One HTTP/1.1 request over plain TCP or TLS (optionally with a client certificate): what the
//! suite needs to talk to the platform's REST API and to a gateway's HTTPS server as a device.

use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// TLS settings of a request: whom to trust, which name to verify, which certificate to show.
#[derive(Clone)]
pub struct Tls {
    /// PEM bundle the server's chain must end in.
    pub ca_pem: String,
    /// Name checked against the server certificate (and sent as SNI).
    pub server_name: String,
    /// Client certificate and key (PEM), for mTLS.
    pub client: Option<(String, String)>,
}

/// A response: status, body, and the server's leaf certificate (DER) when over TLS.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
    /// The certificate the server presented.
    pub peer_cert: Option<Vec<u8>>,
}

impl Reply {
    /// The body as JSON, with the body in the error when it is not.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

fn client_config(tls: &Tls) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&tls.ca_pem)? {
        roots.add(c).context("CA certificate")?;
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    Ok(match &tls.client {
        Some((cert, key)) => {
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).context("client key PEM")?;
            b.with_client_auth_cert(pem_certs(cert)?, key)
                .context("client certificate")?
        }
        None => b.with_no_client_auth(),
    })
}

fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("certificate PEM")
}

/// Sends one request and reads the whole response (10 s limit for connect + exchange).
pub async fn request(
    addr: SocketAddr,
    tls: Option<&Tls>,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<serde_json::Value>,
) -> Result<Reply> {
    tokio::time::timeout(
        Duration::from_secs(10),
        exchange(addr, tls, method, path, headers, body),
    )
    .await
    .map_err(|_| anyhow!("{method} {path} at {addr}: no answer within 10 s"))?
}

async fn exchange(
    addr: SocketAddr,
    tls: Option<&Tls>,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<serde_json::Value>,
) -> Result<Reply> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Full::new(Bytes::from(serde_json::to_vec(&v)?))
        }
        None => Full::new(Bytes::new()),
    };
    let req = req.body(body)?;
    match tls {
        None => send(hyper_util::rt::TokioIo::new(tcp), req, None).await,
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(tls)?));
            let name = ServerName::try_from(tls.server_name.clone())?;
            let stream = connector
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {addr} as {}", tls.server_name))?;
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec());
            send(hyper_util::rt::TokioIo::new(stream), req, peer).await
        }
    }
}

async fn send<T>(io: T, req: http::Request<Full<Bytes>>, peer: Option<Vec<u8>>) -> Result<Reply>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        body,
        peer_cert: peer,
    })
}

/// Serial number of a DER certificate, hex: tells two issuances apart.
pub fn serial(der: &[u8]) -> Result<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow!("certificate does not parse: {e}"))?;
    Ok(cert.raw_serial_as_string())
}

/// Serial number of the first certificate of a PEM bundle.
pub fn pem_serial(pem: &str) -> Result<String> {
    let certs = pem_certs(pem)?;
    serial(certs.first().context("no certificate in PEM")?)
}

/// Follows a server-sent event stream (plain HTTP), calling `on_data` with each `data:` payload
/// until the stream ends or fails; returns why it ended.
pub async fn follow_events(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    mut on_data: impl FnMut(&str) + Send,
) -> Result<()> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let mut req = http::Request::builder()
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(Bytes::new()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        anyhow::bail!("{path}: status {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if let Some(payload) = line.strip_prefix(b"data: ") {
                on_data(String::from_utf8_lossy(payload).trim_end());
            }
        }
    }
    Ok(())
}
