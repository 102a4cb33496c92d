//! Time-limited TURN credentials from a secret shared with the TURN server (the "TURN REST
//! API" scheme coturn implements as `use-auth-secret` / `static-auth-secret`): the username
//! is `<expiry, Unix seconds>:<user>`, the password base64(HMAC-SHA1(secret, username)). The
//! TURN server checks the HMAC with the same secret and refuses the username once the expiry
//! has passed, so what a client is handed stops working by itself; no password is ever
//! static. Sans-IO: the time comes in.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// How long handed-out credentials stay valid unless configured otherwise: a long call and
/// its reconnects, not days.
pub const DEFAULT_TTL: Duration = Duration::from_secs(6 * 3600);

/// The secret shared with the TURN server, and how long credentials made from it last.
#[derive(Clone)]
pub struct TurnSecret {
    secret: String,
    pub ttl: Duration,
}

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself in a log.
        f.debug_struct("TurnSecret")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// One client's TURN credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    pub username: String,
    pub credential: String,
    /// When they stop working, Unix seconds.
    pub expires_unix: u64,
}

impl TurnSecret {
    #[must_use]
    pub fn new(secret: impl Into<String>, ttl: Duration) -> Self {
        Self {
            secret: secret.into(),
            ttl,
        }
    }

    /// Credentials for `user` (any name without a colon; it only labels the allocation in the
    /// TURN server's logs), valid from `now_unix` for the TTL.
    #[must_use]
    pub fn credentials(&self, user: &str, now_unix: u64) -> TurnCredentials {
        let expires_unix = now_unix.saturating_add(self.ttl.as_secs());
        let username = format!("{expires_unix}:{}", user.replace(':', "-"));
        // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
        let mut mac = Hmac::<Sha1>::new_from_slice(self.secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(username.as_bytes());
        let credential =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        TurnCredentials {
            username,
            credential,
            expires_unix,
        }
    }
}

/// `config` for one client: with `turn`, fresh credentials (for a random user label, valid
/// from now) on every TURN server; without, `config` as it is.
#[must_use]
pub fn for_client(
    config: &liveloop_proto::rtc_config::RtcConfig,
    turn: Option<&TurnSecret>,
) -> liveloop_proto::rtc_config::RtcConfig {
    let Some(turn) = turn else {
        return config.clone();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let user = format!("liveloop-{:08x}", rand::random::<u32>());
    let c = turn.credentials(&user, now);
    config.with_turn_credentials(&c.username, &c.credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_matches_coturns_rest_api() {
        // Worked by hand: `printf '%s' 1700021600:ada | openssl dgst -sha1 -hmac s3cret -binary
        // | base64`.
        let secret = TurnSecret::new("s3cret", Duration::from_secs(21_600));
        let c = secret.credentials("ada", 1_700_000_000);
        assert_eq!(c.username, "1700021600:ada");
        assert_eq!(c.expires_unix, 1_700_021_600);
        assert_eq!(c.credential, "ka/KAa8n3CD9JSySa/xm8BY9/M4=");
        // A colon in the user would end the expiry field early.
        assert_eq!(secret.credentials("a:b", 0).username, "21600:a-b");
        assert!(!format!("{secret:?}").contains("s3cret"));
    }
}
