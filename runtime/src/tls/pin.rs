//! Certificate pinning: a peer is trusted when its certificate (or its key) is exactly one we hold.
//!
//! This is the model of edge controllers that trust a self-signed peer: no chain, no hostname, but
//! the handshake signature is still verified (the peer proves it holds the key) and a self-signed
//! pinned certificate's own signature must verify too. One verifier serves both directions: as a
//! server checking clients, and as the tunnel's client checking the platform.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::signatures::Signatures;
use super::PinMode;

/// Why a set of pins could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// A pinned certificate is not valid X.509.
    #[error("pinned certificate #{index} does not parse: {reason}")]
    Parse {
        /// 1-based position among all pinned certificates.
        index: usize,
        /// Parser message.
        reason: String,
    },
    /// A self-signed pinned certificate whose own signature does not verify.
    #[error("pinned certificate #{0} is self-signed but its signature does not verify")]
    BadSelfSignature(usize),
    /// No pins at all.
    #[error("no pinned certificates")]
    Empty,
}

/// A client- and server-certificate verifier that accepts only pinned certificates.
#[derive(Debug)]
pub struct PinnedVerifier {
    /// DER certificates or DER SubjectPublicKeyInfos, per `mode`.
    pins: Vec<Vec<u8>>,
    mode: PinMode,
    mandatory: bool,
    sigs: Signatures,
}

impl PinnedVerifier {
    /// Builds a verifier from pinned certificates; `mandatory` matters only for client auth.
    pub fn new(
        certs: &[CertificateDer<'_>],
        mode: PinMode,
        mandatory: bool,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, PinError> {
        if certs.is_empty() {
            return Err(PinError::Empty);
        }
        let mut pins = Vec::with_capacity(certs.len());
        for (i, der) in certs.iter().enumerate() {
            let (_, cert) =
                x509_parser::parse_x509_certificate(der).map_err(|e| PinError::Parse {
                    index: i + 1,
                    reason: e.to_string(),
                })?;
            if cert.subject() == cert.issuer() && cert.verify_signature(None).is_err() {
                return Err(PinError::BadSelfSignature(i + 1));
            }
            pins.push(match mode {
                PinMode::Certificate => der.to_vec(),
                PinMode::Spki => cert.public_key().raw.to_vec(),
            });
        }
        Ok(Self {
            pins,
            mode,
            mandatory,
            sigs: Signatures::new(provider),
        })
    }

    /// Accepts the end-entity certificate only when it matches a pin.
    fn check(&self, end_entity: &CertificateDer<'_>, now: UnixTime) -> Result<(), Error> {
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let presented: &[u8] = match self.mode {
            PinMode::Certificate => end_entity.as_ref(),
            PinMode::Spki => cert.public_key().raw,
        };
        // Pins are public; a plain comparison leaks nothing secret.
        if !self.pins.iter().any(|p| p.as_slice() == presented) {
            return Err(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        }
        let now = now.as_secs() as i64;
        let validity = cert.validity();
        if now > validity.not_after.timestamp() {
            return Err(Error::InvalidCertificate(CertificateError::Expired));
        }
        if now < validity.not_before.timestamp() {
            return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
        }
        if self.mode == PinMode::Spki
            && cert.subject() == cert.issuer()
            && cert.verify_signature(None).is_err()
        {
            return Err(Error::InvalidCertificate(CertificateError::BadSignature));
        }
        Ok(())
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check(end_entity, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.sigs.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.sigs.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.sigs.schemes()
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check(end_entity, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.sigs.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.sigs.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.sigs.schemes()
    }
}
