//! HTTPS for the room service. Browsers give a page the camera and microphone only on a secure
//! origin (`https:`, or `localhost`), so a browser guest on another computer needs the room
//! service over TLS: with a certificate the operator has (`liveloop-server --tls-cert
//! --tls-key`), or one generated here (`--tls-self-signed`, and the app's built-in servers,
//! which keep theirs in the app's configuration folder), which a guest's browser warns about
//! once.
//!
//! [`TlsListener`] does the handshakes off the accept loop, [`MAX_HANDSHAKES`] at a time, each
//! within [`HANDSHAKE_TIMEOUT`]: a client that opens a connection and sends nothing holds a
//! place for ten seconds at most, and past the cap new connections are closed at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// TLS handshakes in progress at most; past it a new connection is closed.
pub const MAX_HANDSHAKES: usize = 64;
/// How long a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why there is no TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no certificate (PEM) in {0}")]
    NoCertificate(String),
    #[error("no private key (PEM) in {0}: {1}")]
    BadKey(String, String),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A certificate chain and its private key, PEM.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

/// A self-signed certificate for `names` (host names and IP addresses; an entry that parses
/// as an address becomes an IP address entry).
///
/// # Errors
/// When the key or certificate cannot be made (a name that is neither).
pub fn self_signed(names: &[String]) -> Result<Identity, TlsError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "LiveLoop on this computer");
    let cert = params.self_signed(&key)?;
    Ok(Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The certificate and key in two PEM files.
///
/// # Errors
/// When a file cannot be read.
pub fn load(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok(Identity {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
    })
}

/// The self-signed certificate kept in `dir` for `names`, made (and kept) when there is none
/// or the names changed (another network address): a guest accepts it once, not at every
/// start.
///
/// # Errors
/// When it can be neither read nor made and written.
pub fn kept(dir: &Path, names: &[String]) -> Result<Identity, TlsError> {
    let (cert, key, list) = (
        dir.join("tls-cert.pem"),
        dir.join("tls-key.pem"),
        dir.join("tls-names.txt"),
    );
    let wanted = names.join("\n");
    if std::fs::read_to_string(&list).is_ok_and(|l| l == wanted)
        && let Ok(id) = load(&cert, &key)
    {
        return Ok(id);
    }
    let id = self_signed(names)?;
    let write = |path: &Path, text: &str| {
        std::fs::create_dir_all(dir)
            .and_then(|()| write_private(path, text))
            .map_err(|source| TlsError::Write {
                path: path.to_owned(),
                source,
            })
    };
    write(&key, &id.key_pem)?;
    write(&cert, &id.cert_pem)?;
    write(&list, &wanted)?;
    Ok(id)
}

/// Writes a file only its owner can read (the key).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, text.as_bytes())
}

/// A server configuration for `id` (ring, TLS 1.2 and 1.3, HTTP/1.1: WebSockets upgrade over
/// it).
///
/// # Errors
/// When the PEM holds no certificate or no usable key, or they do not match.
pub fn server_config(id: &Identity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
            .filter_map(Result::ok)
            .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate("the certificate file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
        .map_err(|e| TlsError::BadKey("the key file".into(), e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TLS connections for `axum::serve` (see the module for its bounds).
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` (the handshakes run on tasks of their own).
    ///
    /// # Errors
    /// When the listener has no local address.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        let acceptor = TlsAcceptor::from(config);
        let places = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let (stream, addr) = tokio::select! {
                    accepted = tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: wait a little, as axum does.
                            tracing::debug!(error = %e, "TLS accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = tx.closed() => return,
                };
                let Ok(place) = places.clone().try_acquire_owned() else {
                    tracing::debug!(%addr, "too many TLS handshakes at once: connection closed");
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _place = place;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task ended (it never does while this listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    // Test code: failing loudly is intended.
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_kept_certificate_is_reused_until_the_names_change() {
        let dir = std::env::temp_dir().join(format!("liveloop-tls-{}", std::process::id()));
        let names = vec!["localhost".to_owned(), "10.0.0.5".to_owned()];
        let first = kept(&dir, &names).unwrap();
        assert!(server_config(&first).is_ok());
        let again = kept(&dir, &names).unwrap();
        assert_eq!(first.cert_pem, again.cert_pem, "kept, not made anew");
        let moved = kept(&dir, &["localhost".to_owned(), "10.0.0.6".to_owned()]).unwrap();
        assert_ne!(
            first.cert_pem, moved.cert_pem,
            "a new address, a new certificate"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("tls-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is the owner's only");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let id = Identity {
            cert_pem: "not a certificate".into(),
            key_pem: String::new(),
        };
        assert!(matches!(
            server_config(&id),
            Err(TlsError::NoCertificate(_))
        ));
        let good = self_signed(&["localhost".to_owned()]).unwrap();
        let id = Identity {
            key_pem: "nothing".into(),
            ..good
        };
        assert!(matches!(server_config(&id), Err(TlsError::BadKey(..))));
    }
}
