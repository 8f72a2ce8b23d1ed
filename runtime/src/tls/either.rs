//! Client certificates trusted two ways at once: pinned device certificates beside a CA, as
//! the APS bus model keeps the saved certificate of each device it paired with while devices
//! enrolled through a CA keep working. A certificate passes when it matches a pin, else when it
//! chains to the CA; the handshake signature is verified either way.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::pin::PinnedVerifier;

/// Pins first, then the CA chain.
#[derive(Debug)]
pub struct PinnedOrChain {
    pinned: PinnedVerifier,
    chain: Arc<dyn ClientCertVerifier>,
    /// The CA's subjects and the pinned certificates' issuers: clients that pick a
    /// certificate by the server's hints (OpenSSL's callbacks, browsers) find theirs either way.
    hints: Vec<DistinguishedName>,
}

impl PinnedOrChain {
    /// `pinned_issuers` are the DER issuer names of the pinned certificates.
    pub fn new(
        pinned: PinnedVerifier,
        chain: Arc<dyn ClientCertVerifier>,
        pinned_issuers: Vec<Vec<u8>>,
    ) -> Self {
        let mut hints = chain.root_hint_subjects().to_vec();
        for issuer in pinned_issuers {
            if !hints.iter().any(|h| h.as_ref() == issuer.as_slice()) {
                hints.push(DistinguishedName::from(issuer));
            }
        }
        Self {
            pinned,
            chain,
            hints,
        }
    }
}

impl ClientCertVerifier for PinnedOrChain {
    fn offer_client_auth(&self) -> bool {
        self.chain.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.chain.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match self
            .pinned
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(v) => Ok(v),
            Err(_) => self
                .chain
                .verify_client_cert(end_entity, intermediates, now),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.pinned.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.pinned.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.pinned.supported_verify_schemes()
    }
}
