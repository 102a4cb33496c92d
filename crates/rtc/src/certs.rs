//! DTLS certificates made ahead of time, off the call path (issue 21's setup goals). Each
//! peer connection still gets a certificate of its own — the engine tells two peer
//! connections under one id apart by their DTLS fingerprints — but it is taken from a small
//! pool a background thread keeps filled, instead of being made (an ECDSA P-256 key and a
//! self-signed certificate, as webrtc-rs makes them) while the call waits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use rtc::crypto::SignatureScheme;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};

/// Certificates kept ready: a mesh call's first few peers take them at once.
const KEEP: usize = 4;

static POOL: Mutex<Vec<RTCCertificate>> = Mutex::new(Vec::new());
static FILLING: AtomicBool = AtomicBool::new(false);

/// Starts filling the pool in the background (a client calls it at start, before any call).
pub fn warm_up() {
    if FILLING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("dtls-certs".into())
        .spawn(|| {
            while POOL.lock().unwrap_or_else(PoisonError::into_inner).len() < KEEP {
                match make() {
                    Some(cert) => POOL
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(cert),
                    None => break,
                }
            }
            FILLING.store(false, Ordering::Release);
        });
    if spawned.is_err() {
        FILLING.store(false, Ordering::Release);
    }
}

/// A certificate from the pool (and a refill started), or `None` when it is empty: then
/// webrtc-rs makes one itself, as it always did.
pub(crate) fn take() -> Option<RTCCertificate> {
    let cert = POOL.lock().unwrap_or_else(PoisonError::into_inner).pop();
    warm_up();
    cert
}

/// One certificate as webrtc-rs makes its own: ECDSA P-256, a random 16-letter subject.
fn make() -> Option<RTCCertificate> {
    let provider = rtc::crypto::default_provider()
        .inspect_err(|e| tracing::warn!(error = %e, "no crypto provider for DTLS certificates"))
        .ok()?;
    let name: String = (0..16)
        .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
        .collect();
    let params = CertificateParams::new(vec![name]).ok()?;
    RTCCertificate::generate(provider.crypto(), SignatureScheme::EcdsaP256Sha256, params)
        .inspect_err(|e| tracing::warn!(error = %e, "making a DTLS certificate"))
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    #[test]
    fn the_pool_fills_and_every_certificate_is_another() {
        warm_up();
        let mut fingerprints = std::collections::HashSet::new();
        for _ in 0..3 {
            let cert = (0..200)
                .find_map(|_| {
                    take().or_else(|| {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        None
                    })
                })
                .expect("the pool fills within 2 s");
            let provider = rtc::crypto::default_provider().expect("ring");
            let fp = cert
                .get_fingerprints(provider.crypto())
                .expect("a fingerprint");
            assert!(!fp.is_empty());
            assert!(
                fingerprints.insert(format!("{fp:?}")),
                "a certificate twice"
            );
        }
    }
}
