//! TLS for the room client's WebSocket (`wss://`). Servers elsewhere are checked against the
//! system's trusted roots, as a browser checks them. On this computer or the local network (the
//! hosts `proto::link` already takes plain `ws://` from, and addresses inside this computer's
//! own interface prefixes: `crate::net`), any certificate is taken: a LiveLoop
//! app's built-in servers have a self-signed one, and trusting it there is no weaker than the
//! plain `ws://` that is accepted there anyway. The handshake's signature is still checked
//! against the certificate presented.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The connector for `url`: `None` (tokio-tungstenite's own: the system's roots) unless it is
/// a `wss://` server on the local network.
#[must_use]
pub fn connector_for(url: &str) -> Option<tokio_tungstenite::Connector> {
    let local = url.starts_with("wss://")
        && liveloop_proto::link::server_host(url)
            .is_some_and(|h| liveloop_proto::link::is_local_host_on(h, &crate::net::on_link));
    if !local {
        return None;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Some(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}

/// Takes any certificate chain and name, and checks the handshake's signatures with it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_wss_servers_take_any_certificate() {
        assert!(connector_for("wss://192.168.1.5:4443/ws").is_some());
        assert!(connector_for("wss://[fd00::2]:4443/ws").is_some());
        assert!(connector_for("wss://laptop.local:4443/ws").is_some());
        assert!(connector_for("wss://rooms.example.com/ws").is_none());
        assert!(connector_for("wss://8.8.8.8/ws").is_none());
        assert!(connector_for("ws://192.168.1.5:8080/ws").is_none());
    }
}
