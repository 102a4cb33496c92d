//! Listen addresses as the seeds write them: `host:port`, `:port` (all interfaces),
//! `[::]:port`, `unix:/path`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

/// Where a service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Why an address did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid listen address {0:?}: use host:port, :port, [::]:port or unix:/path")]
pub struct AddrError(pub String);

impl FromStr for ListenAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AddrError(s.to_owned());
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(err());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(port) = s.strip_prefix(':') {
            let port = port.parse::<u16>().map_err(|_| err())?;
            return Ok(Self::Tcp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port,
            )));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self::Tcp(addr));
        }
        // A host name such as localhost:8080: resolve once, at start-up.
        s.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(Self::Tcp)
            .ok_or_else(err)
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_forms() {
        let tcp = |s: &str| {
            s.parse::<SocketAddr>()
                .map(ListenAddr::Tcp)
                .map_err(|_| AddrError(s.into()))
        };
        assert_eq!(":8080".parse(), tcp("0.0.0.0:8080"));
        assert_eq!("0.0.0.0:8080".parse(), tcp("0.0.0.0:8080"));
        assert_eq!("[::]:8080".parse(), tcp("[::]:8080"));
        assert_eq!(
            "unix:/var/run/webrtc.sock".parse(),
            Ok(ListenAddr::Unix("/var/run/webrtc.sock".into()))
        );
        assert!(
            matches!("localhost:3000".parse::<ListenAddr>(), Ok(ListenAddr::Tcp(a)) if a.port() == 3000)
        );
        for bad in ["", ":", ":99999", "unix:", "nonsense", "1.2.3.4"] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }
}
