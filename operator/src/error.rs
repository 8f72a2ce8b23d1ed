//! Why a reconcile fails: the operator's [`Error`], at the bottom of its module graph (every
//! step returns it; it imports only the certificate errors it wraps).

use crate::certs;

/// Why a reconcile failed (retried by [`crate::controller::error_policy`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{action} {kind} {name}: {source}")]
    Kube {
        /// get, apply, create, replace.
        action: &'static str,
        /// Object kind.
        kind: &'static str,
        /// Object name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Certificate material could not be made.
    #[error("certificate: {0}")]
    Cert(#[from] certs::CertError),
    /// A namespace CA Secret exists but cannot be used.
    #[error("Secret {namespace}/{secret} is unusable ({reason}); delete it to have a new CA made")]
    BadCa {
        /// The Secret.
        secret: &'static str,
        /// Namespace.
        namespace: String,
        /// What is wrong.
        reason: String,
    },
    /// Basic-auth credentials could not be generated.
    #[error("generating basic-auth credentials: {0}")]
    Credentials(String),
    /// The rendered config could not be serialized.
    #[error("serializing the sidecar config: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
    /// The gateway has no namespace (it is a namespaced resource, so never in practice).
    #[error("gateway has no namespace")]
    NoNamespace,
}

impl Error {
    /// Short label for the errors metric.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Cert(_) => "certificate",
            Error::BadCa { .. } => "ca",
            Error::Credentials(_) => "credentials",
            Error::Yaml(_) => "render",
            Error::NoNamespace => "input",
        }
    }
}

pub(crate) fn kube_err(
    action: &'static str,
    kind: &'static str,
    name: &str,
) -> impl FnOnce(kube::Error) -> Error {
    let name = name.to_owned();
    move |source| Error::Kube {
        action,
        kind,
        name,
        source,
    }
}
