//! Opening the websocket to the platform: DNS (re-resolved every time), TCP, TLS with the
//! configured verification, and the websocket upgrade, each stage under its own timeout.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::config::{ClientCert, ServerVerification, TunnelConfig};
use edgeway_runtime::tls::PinMode;
use edgeway_runtime::tls::{
    anchor::AnchorVerifier, criteria::CriteriaVerifier, insecure::AnyServerCert, load_cert_chain,
    load_certs, load_key, load_roots, pin::PinnedVerifier, provider,
};
use edgeway_runtime::ws::{self, End, Socket};
use edgeway_runtime::ConfigError;
use rustls::client::WebPkiServerVerifier;

/// A byte stream under the websocket: TLS, or plain TCP when explicitly allowed.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Largest websocket message taken from the platform: an AlwaysOn message of the reassembler's
/// 1 MiB bound (the EMS `max_msg_size`) in one frame, plus its header. Platforms chunk at 8 KiB.
const MAX_FRAME: usize = (1 << 20) + 64;

/// The websocket type of a tunnel.
pub type Ws = Socket<Box<dyn Io>>;

/// Why a connect attempt failed; the stage tells an operator where to look.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL could not be used.
    #[error("bad platform URL: {0}")]
    Url(String),
    /// A stage did not finish in time.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// DNS gave nothing or failed.
    #[error("resolving {host}: {reason}")]
    Resolve {
        /// Host name.
        host: String,
        /// Resolver message.
        reason: String,
    },
    /// TCP connect failed on every address.
    #[error("connecting to {0}: {1}")]
    Tcp(String, std::io::Error),
    /// TLS handshake failed (certificate refused, protocol error...).
    #[error("TLS handshake with {0}: {1}")]
    Tls(String, std::io::Error),
    /// The websocket upgrade failed.
    #[error("websocket upgrade: {0}")]
    Upgrade(String),
    /// The HTTP proxy did not open the tunnel.
    #[error(transparent)]
    Proxy(#[from] super::proxy::ProxyError),
}

impl ConnectError {
    /// The stage that failed, as a fixed metric label.
    pub fn stage(&self) -> &'static str {
        match self {
            ConnectError::Url(_) => "url",
            ConnectError::Timeout("DNS") | ConnectError::Resolve { .. } => "dns",
            ConnectError::Timeout("TCP connect") | ConnectError::Tcp(..) => "tcp",
            ConnectError::Timeout("TLS handshake") | ConnectError::Tls(..) => "tls",
            ConnectError::Timeout(_) | ConnectError::Upgrade(_) => "upgrade",
            ConnectError::Proxy(_) => "proxy",
        }
    }
}

/// Everything needed to connect. The TLS files are read again at every connect, so a renewed
/// client certificate or CA bundle is used from the next reconnect on without a restart; a
/// broken file is logged and the last good material is kept.
pub struct Connector {
    config: TunnelConfig,
    url: String,
    host: String,
    port: u16,
    tls: std::sync::Mutex<Option<TlsConnector>>,
    insecure: bool,
    stage_timeout: Duration,
}

impl Connector {
    /// One connector per platform address: `url`, then `failoverUrls`.
    pub fn all(cfg: &TunnelConfig) -> Result<Vec<Self>, ConfigError> {
        let mut out = vec![Self::new(cfg, &cfg.url, "tunnel.url")?];
        for (i, url) in cfg.failover_urls.iter().enumerate() {
            out.push(Self::new(cfg, url, &format!("tunnel.failoverUrls[{i}]"))?);
        }
        Ok(out)
    }

    /// The platform address this connector dials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Reads the CA/pinned/client-cert files named in the config; errors name the field.
    pub fn new(cfg: &TunnelConfig, url: &str, field: &str) -> Result<Self, ConfigError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| ConfigError::new(field, format!("{e}")))?;
        let secure = uri.scheme_str() == Some("wss");
        let host = uri
            .host()
            .ok_or_else(|| ConfigError::new(field, "has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tls = if secure {
            Some(TlsConnector::from(Arc::new(client_config(
                &cfg.server,
                cfg.client_cert.as_ref(),
                "tunnel",
            )?)))
        } else {
            None
        };
        Ok(Self {
            config: cfg.clone(),
            url: url.to_owned(),
            host,
            port,
            tls: std::sync::Mutex::new(tls),
            insecure: cfg.server.insecure_skip_verify,
            stage_timeout: Duration::from_millis(cfg.timing.stage_timeout_ms),
        })
    }

    /// The TLS connector for this attempt: rebuilt from the files, or the last good one.
    fn current_tls(&self) -> Option<TlsConnector> {
        let mut guard = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_some() {
            match client_config(
                &self.config.server,
                self.config.client_cert.as_ref(),
                "tunnel",
            ) {
                Ok(cfg) => *guard = Some(TlsConnector::from(Arc::new(cfg))),
                Err(e) => {
                    tracing::error!(error = %e, "tunnel TLS files rejected; keeping the previous ones")
                }
            }
        }
        guard.clone()
    }

    /// Opens a fresh websocket; DNS is resolved anew on every call. With a proxy, the TCP
    /// connection goes to the proxy, which is asked to `CONNECT` to the platform.
    pub async fn connect(&self) -> Result<Ws, ConnectError> {
        let proxy = self.config.proxy.as_ref();
        let tcp = self.first_hop().await.map_err(|e| match (proxy, e) {
            // Before the CONNECT is answered, every failure is the proxy's.
            (
                Some(p),
                e @ (ConnectError::Resolve { .. }
                | ConnectError::Tcp(..)
                | ConnectError::Timeout(_)),
            ) => super::proxy::ProxyError::Unreachable {
                proxy: p.address.clone(),
                reason: e.to_string(),
            }
            .into(),
            (_, e) => e,
        })?;
        self.over(tcp).await
    }

    /// TCP to the platform, or to the proxy and through its `CONNECT`.
    async fn first_hop(&self) -> Result<TcpStream, ConnectError> {
        let t = self.stage_timeout;
        let target = format!("{}:{}", self.host, self.port);
        let proxy = self.config.proxy.as_ref();
        let first_hop = proxy.map_or(target.as_str(), |p| p.address.as_str());
        let resolve_err = |reason: String| ConnectError::Resolve {
            host: first_hop.to_owned(),
            reason,
        };
        let addrs: Vec<_> = tokio::time::timeout(t, tokio::net::lookup_host(first_hop))
            .await
            .map_err(|_| ConnectError::Timeout("DNS"))?
            .map_err(|e| resolve_err(e.to_string()))?
            .collect();
        if addrs.is_empty() {
            return Err(resolve_err("no addresses".into()));
        }
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match tokio::time::timeout(t, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    tcp = Some(s);
                    break;
                }
                Ok(Err(e)) => last = Some(ConnectError::Tcp(addr.to_string(), e)),
                Err(_) => last = Some(ConnectError::Timeout("TCP connect")),
            }
        }
        let mut tcp = match tcp {
            Some(s) => s,
            None => return Err(last.unwrap_or(ConnectError::Timeout("TCP connect"))),
        };
        let _ = tcp.set_nodelay(true);
        if let Some(p) = proxy {
            let auth = p
                .credentials_file
                .as_deref()
                .map(super::proxy::basic_credentials)
                .transpose()?;
            let handshake =
                super::proxy::connect_through(&mut tcp, &p.address, &target, auth.as_deref());
            tokio::time::timeout(t, handshake)
                .await
                .map_err(|_| ConnectError::Timeout("proxy CONNECT"))??;
        }
        Ok(tcp)
    }

    /// TLS (when `wss://`) and the websocket upgrade over `tcp`.
    async fn over(&self, tcp: TcpStream) -> Result<Ws, ConnectError> {
        let t = self.stage_timeout;
        let target = format!("{}:{}", self.host, self.port);
        let stream = match self.current_tls() {
            Some(connector) => {
                if self.insecure {
                    tracing::warn!(url = %self.url, "platform certificate NOT verified (tunnel.server.insecureSkipVerify)");
                }
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| ConnectError::Url(e.to_string()))?;
                let tls = tokio::time::timeout(t, connector.connect(name, tcp))
                    .await
                    .map_err(|_| ConnectError::Timeout("TLS handshake"))?
                    .map_err(|e| ConnectError::Tls(target.clone(), e))?;
                Box::new(tls) as Box<dyn Io>
            }
            None => Box::new(tcp) as Box<dyn Io>,
        };
        let url = url::Url::parse(&self.url).map_err(|e| ConnectError::Url(e.to_string()))?;
        let options = ws::options(End::Client, MAX_FRAME, self.config.compression);
        let ws = tokio::time::timeout(t, yawc::WebSocket::handshake(url, stream, options))
            .await
            .map_err(|_| ConnectError::Timeout("websocket upgrade"))?
            .map_err(|e| ConnectError::Upgrade(e.to_string()))?;
        Ok(Socket::new(ws))
    }
}

/// The rustls client config for a platform connection: CA, anchor, pinned or (explicitly) no
/// verification; optional client cert. `section` (`tunnel`, `mqtt`) prefixes the field paths
/// errors name.
pub fn client_config(
    server: &ServerVerification,
    client_cert: Option<&ClientCert>,
    section: &str,
) -> Result<rustls::ClientConfig, ConfigError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| ConfigError::new(section, e.to_string()))?;
    let field = |f: &str| format!("{section}.{f}");
    let v = server;
    let builder = if let Some(ca) = &v.ca {
        let roots = load_roots(ca, &field("server.ca"))?;
        match &v.criteria {
            None => builder.with_root_certificates(roots),
            Some(criteria) => {
                let chain =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| ConfigError::new(field("server.ca"), e.to_string()))?;
                let verifier = CriteriaVerifier::new(chain, criteria.clone());
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
            }
        }
    } else if let Some(anchor) = &v.anchor {
        let roots = load_roots(anchor, &field("server.anchor"))?;
        let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| ConfigError::new(field("server.anchor"), e.to_string()))?;
        let anchored = Arc::new(AnchorVerifier::new(chain));
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match &v.criteria {
            None => anchored,
            Some(criteria) => Arc::new(CriteriaVerifier::new(anchored, criteria.clone())),
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
    } else if let Some(pin) = &v.pinned {
        let certs = load_certs(pin, &field("server.pinned"))?;
        let pinned = PinnedVerifier::new(&certs, PinMode::Certificate, true, provider.clone())
            .map_err(|e| ConfigError::new(field("server.pinned"), e.to_string()))?;
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match &v.criteria {
            None => Arc::new(pinned),
            Some(criteria) => Arc::new(CriteriaVerifier::new(Arc::new(pinned), criteria.clone())),
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert::new(provider)))
    };
    match client_cert {
        Some(c) => {
            let certs = load_cert_chain(
                &c.cert,
                &field("clientCert.cert"),
                c.key_passphrase_file.as_deref(),
            )?;
            let key = load_key(
                &c.key,
                &field("clientCert.key"),
                c.key_passphrase_file.as_deref(),
            )?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                ConfigError::new(
                    field("clientCert.key"),
                    format!("does not match the cert: {e}"),
                )
            })
        }
        None => Ok(builder.with_no_client_auth()),
    }
}
