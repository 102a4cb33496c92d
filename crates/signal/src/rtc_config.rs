//! The STUN and TURN servers a signaling server offers its clients: `GET /api/rtc-config`
//! (both LiveLoop services serve it; with `--turn-secret` every answer carries fresh
//! time-limited TURN credentials, so it is asked for at every call). The certificate rules are
//! the room client's (`crate::tls`): any certificate on this computer or the local network,
//! the system's roots elsewhere.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use liveloop_proto::rtc_config::RtcConfig;

use crate::SignalError;

/// How long the whole request may take.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// The largest answer read (a configuration is a few hundred bytes).
pub const MAX_BYTES: u64 = 64 * 1024;

/// `http(s)://host[:port]/api/rtc-config` for a server named by a room-service WebSocket URL
/// (`ws://host:port/ws`, `wss://…`) or a base URL (`http(s)://host[:port][/…]`); `None` for
/// anything else.
#[must_use]
pub fn url_for(server: &str) -> Option<String> {
    let (scheme, rest) = [
        ("wss://", "https"),
        ("ws://", "http"),
        ("https://", "https"),
        ("http://", "http"),
    ]
    .iter()
    .find_map(|(prefix, scheme)| server.strip_prefix(prefix).map(|rest| (*scheme, rest)))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    (!authority.is_empty() && !authority.contains('@'))
        .then(|| format!("{scheme}://{authority}/api/rtc-config"))
}

/// Asks the server `server` names (see [`url_for`]) for its configuration.
///
/// # Errors
/// [`SignalError::Invalid`] for a URL that names no server, no answer within [`TIMEOUT`], an
/// HTTP error, or an answer that is not a valid configuration.
pub async fn fetch(server: &str) -> Result<RtcConfig, SignalError> {
    let url =
        url_for(server).ok_or_else(|| SignalError::Invalid(format!("no server in {server:?}")))?;
    tokio::task::spawn_blocking(move || fetch_blocking(&url))
        .await
        .map_err(|e| SignalError::Invalid(format!("rtc-config request: {e}")))?
}

fn fetch_blocking(url: &str) -> Result<RtcConfig, SignalError> {
    let err = |e: &dyn std::fmt::Display| SignalError::Invalid(format!("{url}: {e}"));
    let local = liveloop_proto::link::server_host(&url.replacen("http", "ws", 1))
        .is_some_and(|h| liveloop_proto::link::is_local_host_on(h, &crate::net::on_link));
    let mut tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()));
    tls = if local {
        // A LiveLoop app's built-in servers have a self-signed certificate (see `crate::tls`).
        tls.disable_verification(true)
    } else {
        let roots = rustls_native_certs::load_native_certs().certs;
        let roots: Vec<ureq::tls::Certificate<'static>> = roots
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        tls.root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .tls_config(tls.build())
        .http_status_as_error(true)
        .build()
        .into();
    let mut body = agent
        .get(url)
        .call()
        .map_err(|e| err(&e))?
        .into_body()
        .into_reader()
        .take(MAX_BYTES);
    let mut text = String::new();
    body.read_to_string(&mut text).map_err(|e| err(&e))?;
    RtcConfig::parse(&text).map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_configuration_url_is_the_servers_origin() {
        assert_eq!(
            url_for("ws://10.0.0.2:4000/ws").as_deref(),
            Some("http://10.0.0.2:4000/api/rtc-config")
        );
        assert_eq!(
            url_for("wss://calls.example/ws?x=1").as_deref(),
            Some("https://calls.example/api/rtc-config")
        );
        assert_eq!(
            url_for("http://[::1]:3000").as_deref(),
            Some("http://[::1]:3000/api/rtc-config")
        );
        assert_eq!(url_for("ftp://x"), None);
        assert_eq!(url_for("http://"), None);
        assert_eq!(url_for("http://user:pw@host/"), None);
    }
}
