//! The RTC configuration a room service hands to its clients (`RTC_CONFIG_JSON`), in the
//! browser's `RTCConfiguration` shape: `{iceServers:[{urls, username?, credential?}],
//! iceTransportPolicy?, bundlePolicy?}`.

use serde::{Deserialize, Serialize};

/// One STUN or TURN server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Urls,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl IceServer {
    /// Whether any of its URLs is `turn:` or `turns:`.
    #[must_use]
    pub fn is_turn(&self) -> bool {
        self.urls
            .as_slice()
            .iter()
            .any(|u| u.starts_with("turn:") || u.starts_with("turns:"))
    }
}

/// `urls` may be one string or a list, as in the browser API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Urls {
    One(String),
    Many(Vec<String>),
}

impl Urls {
    #[must_use]
    pub fn as_slice(&self) -> &[String] {
        match self {
            Self::One(url) => std::slice::from_ref(url),
            Self::Many(urls) => urls,
        }
    }
}

/// A validated RTC configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RtcConfig {
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_transport_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_policy: Option<String>,
}

impl Default for RtcConfig {
    /// The seed's default: one public STUN server.
    fn default() -> Self {
        Self {
            ice_servers: vec![IceServer {
                urls: Urls::Many(vec!["stun:stun.l.google.com:19302".into()]),
                username: None,
                credential: None,
            }],
            ice_transport_policy: None,
            bundle_policy: None,
        }
    }
}

/// Why an RTC configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcConfigError {
    #[error("not valid JSON for an RTCConfiguration: {0}")]
    Json(String),
    #[error("iceServers[{0}] has no urls")]
    NoUrls(usize),
    #[error("iceServers[{index}] url {url:?} must start with stun:, stuns:, turn: or turns:")]
    Scheme { index: usize, url: String },
    #[error("iceServers[{0}] is a TURN server and needs both username and credential")]
    TurnCredentials(usize),
    #[error(
        "iceServers[{0}] is a TURN server with a static username or credential; with a TURN \
         secret, credentials are made for each client: leave both out"
    )]
    StaticTurnCredentials(usize),
    #[error("iceTransportPolicy must be \"all\" or \"relay\", not {0:?}")]
    TransportPolicy(String),
    #[error("bundlePolicy must be \"balanced\", \"max-compat\" or \"max-bundle\", not {0:?}")]
    BundlePolicy(String),
}

impl RtcConfig {
    /// Parses and validates `RTC_CONFIG_JSON`.
    ///
    /// # Errors
    /// An [`RtcConfigError`] saying exactly what is wrong.
    pub fn parse(json: &str) -> Result<Self, RtcConfigError> {
        let config: Self =
            serde_json::from_str(json).map_err(|e| RtcConfigError::Json(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses `RTC_CONFIG_JSON` for a server that makes time-limited TURN credentials from a
    /// shared secret (`--turn-secret`): its TURN servers carry no username or credential
    /// (they are made for each client, [`RtcConfig::with_turn_credentials`]).
    ///
    /// # Errors
    /// As [`RtcConfig::parse`]; [`RtcConfigError::StaticTurnCredentials`] for a TURN server
    /// with a static username or credential.
    pub fn parse_for_secret(json: &str) -> Result<Self, RtcConfigError> {
        let config: Self =
            serde_json::from_str(json).map_err(|e| RtcConfigError::Json(e.to_string()))?;
        config.validate_with(true)?;
        Ok(config)
    }

    /// Whether any server is a TURN server.
    #[must_use]
    pub fn has_turn(&self) -> bool {
        self.ice_servers.iter().any(IceServer::is_turn)
    }

    /// This configuration with `username` and `credential` on every TURN server.
    #[must_use]
    pub fn with_turn_credentials(&self, username: &str, credential: &str) -> Self {
        let mut out = self.clone();
        for server in out.ice_servers.iter_mut().filter(|s| s.is_turn()) {
            server.username = Some(username.to_owned());
            server.credential = Some(credential.to_owned());
        }
        out
    }

    /// Checks URL schemes, TURN credentials and the policies.
    ///
    /// # Errors
    /// See [`RtcConfig::parse`].
    pub fn validate(&self) -> Result<(), RtcConfigError> {
        self.validate_with(false)
    }

    fn validate_with(&self, from_secret: bool) -> Result<(), RtcConfigError> {
        for (index, server) in self.ice_servers.iter().enumerate() {
            let urls = server.urls.as_slice();
            if urls.is_empty() || urls.iter().any(String::is_empty) {
                return Err(RtcConfigError::NoUrls(index));
            }
            for url in urls {
                let scheme = url.split(':').next().unwrap_or_default();
                match scheme {
                    "stun" | "stuns" => {}
                    "turn" | "turns" if from_secret => {
                        if server.username.is_some() || server.credential.is_some() {
                            return Err(RtcConfigError::StaticTurnCredentials(index));
                        }
                    }
                    "turn" | "turns" => {
                        if server.username.is_none() || server.credential.is_none() {
                            return Err(RtcConfigError::TurnCredentials(index));
                        }
                    }
                    _ => {
                        return Err(RtcConfigError::Scheme {
                            index,
                            url: url.clone(),
                        });
                    }
                }
            }
        }
        if let Some(p) = &self.ice_transport_policy
            && !matches!(p.as_str(), "all" | "relay")
        {
            return Err(RtcConfigError::TransportPolicy(p.clone()));
        }
        if let Some(p) = &self.bundle_policy
            && !matches!(p.as_str(), "balanced" | "max-compat" | "max-bundle")
        {
            return Err(RtcConfigError::BundlePolicy(p.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_seed_examples() {
        let one = r#"{"iceServers":[{"urls":"stun:stun.l.google.com:19302"}]}"#;
        let full = r#"{"iceServers":[{"urls":["stun:stun.l.google.com:19302"]},
            {"urls":["turn:turn.example.com:3478"],"username":"user","credential":"pass"}],
            "iceTransportPolicy":"all","bundlePolicy":"balanced"}"#;
        assert!(RtcConfig::parse(one).is_ok());
        let parsed = RtcConfig::parse(full);
        assert_eq!(parsed.map(|c| c.ice_servers.len()), Ok(2));
        assert!(RtcConfig::default().validate().is_ok());
    }

    #[test]
    fn refuses_bad_configs() {
        let cases = [
            ("{", "not valid JSON"),
            (r#"{"iceServers":[{"urls":[]}]}"#, "has no urls"),
            (r#"{"iceServers":[{"urls":"http://x"}]}"#, "must start with"),
            (
                r#"{"iceServers":[{"urls":"turn:x:3478"}]}"#,
                "username and credential",
            ),
            (r#"{"iceTransportPolicy":"none"}"#, "iceTransportPolicy"),
            (r#"{"bundlePolicy":"max"}"#, "bundlePolicy"),
            (r#"{"iceServer":[]}"#, "unknown field"),
        ];
        for (json, says) in cases {
            let err = RtcConfig::parse(json)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(says), "{json}: {err}");
        }
    }

    #[test]
    fn with_a_secret_turn_servers_come_bare_and_get_credentials_per_client() {
        let bare =
            r#"{"iceServers":[{"urls":"stun:s:3478"},{"urls":["turn:t:3478","turns:t:5349"]}]}"#;
        assert_eq!(
            RtcConfig::parse(bare),
            Err(RtcConfigError::TurnCredentials(1))
        );
        let config = RtcConfig::parse_for_secret(bare).unwrap();
        assert!(config.has_turn());
        let given = config.with_turn_credentials("1700000000:ada", "c2VjcmV0");
        assert_eq!(given.ice_servers[0].username, None);
        assert_eq!(
            given.ice_servers[1].username.as_deref(),
            Some("1700000000:ada")
        );
        assert_eq!(given.ice_servers[1].credential.as_deref(), Some("c2VjcmV0"));
        given.validate().unwrap();
        let fixed = r#"{"iceServers":[{"urls":"turn:t","username":"u","credential":"p"}]}"#;
        assert_eq!(
            RtcConfig::parse_for_secret(fixed),
            Err(RtcConfigError::StaticTurnCredentials(0))
        );
    }
}
