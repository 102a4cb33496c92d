//! TURN over TCP and TLS (`turn:…?transport=tcp`, `turns:`), for networks that let no UDP
//! out.
//!
//! webrtc 0.21.1 gathers relay candidates over UDP only: its TURN relayer skips every
//! `turns:` URL and every URL whose transport is not UDP (`turn_relayer.rs`, `gather`). So
//! each such server gets a bridge of ours: a UDP socket on loopback that webrtc-rs is given
//! as a plain UDP TURN server, and for each of webrtc-rs's sockets that talks to it, one TCP
//! (or TLS) connection to the real server. TURN over a stream carries exactly the datagrams
//! it carries over UDP (STUN messages and ChannelData, RFC 8656 §12.5), framed by their own
//! length fields, ChannelData padded to a multiple of four bytes; the allocation, its
//! permissions and the relayed address towards the other side are the same. The framing is
//! [`StreamFramer`] (sans-IO, fuzzed); [`TurnBridge`] is its thin driver.
//!
//! TLS servers are checked against the system's trusted roots (as `wss://` room servers are;
//! `SSL_CERT_FILE` names other roots), under the URL's host name.
//!
//! Caps: at most [`MAX_SOURCES`] local sockets per bridge (webrtc-rs uses one per local
//! address); a source's queue towards the server holds [`QUEUE_PACKETS`] datagrams, and a
//! datagram that finds it full is dropped, as the network would drop it; a stream that
//! breaks the framing is closed (webrtc-rs then sees its allocation time out).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Local sockets one bridge serves.
pub(crate) const MAX_SOURCES: usize = 8;
/// Datagrams queued towards the server per local socket.
pub(crate) const QUEUE_PACKETS: usize = 512;
#[cfg(test)]
/// The largest message a stream can carry: a STUN header and a 16-bit length.
const MAX_MESSAGE: usize = 4 + 0xFFFF + 3;

/// A stream's bytes that are not TURN framing.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    #[error(
        "the TURN stream carried a message that is neither STUN nor ChannelData (first byte {0:#04x})"
    )]
    NotTurn(u8),
}

/// Datagrams out of a TURN byte stream.
#[derive(Debug, Default)]
pub(crate) struct StreamFramer {
    buf: Vec<u8>,
}

/// The length a message takes on the stream (with ChannelData's padding), and without it,
/// from its first eight bytes.
fn frame_lengths(head: [u8; 8]) -> Result<(usize, usize), FrameError> {
    let length = usize::from(u16::from_be_bytes([head[2], head[3]]));
    match head[0] {
        // STUN: a 20-byte header carrying the magic cookie, then `length` bytes of attributes.
        0x00..=0x3F if head[4..8] == [0x21, 0x12, 0xA4, 0x42] => Ok((20 + length, 20 + length)),
        // ChannelData (channels 0x4000–0x4FFF): a 4-byte header, then `length` bytes,
        // padded to four over a stream.
        0x40..=0x4F => Ok((4 + length, (4 + length).next_multiple_of(4))),
        other => Err(FrameError::NotTurn(other)),
    }
}

impl StreamFramer {
    /// Takes bytes as they come off the stream.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole datagram (ChannelData without its padding), if one has arrived.
    ///
    /// # Errors
    /// When the stream holds something other than STUN or ChannelData: it cannot be resynced.
    pub(crate) fn next_datagram(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        // A ChannelData header is four bytes (the smallest message); STUN's cookie ends at 8.
        let head = match self.buf.as_slice() {
            [a @ 0x40..=0x4F, b, c, d, ..] => [*a, *b, *c, *d, 0, 0, 0, 0],
            [0x40..=0x4F, ..] => return Ok(None),
            [a, b, c, d, e, f, g, h, ..] => [*a, *b, *c, *d, *e, *f, *g, *h],
            _ => return Ok(None),
        };
        let (length, framed) = frame_lengths(head)?;
        if self.buf.len() < framed {
            return Ok(None);
        }
        let mut datagram: Vec<u8> = self.buf.drain(..framed).collect();
        datagram.truncate(length);
        Ok(Some(datagram))
    }

    /// Bytes held for a message not yet complete.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// A datagram as a stream carries it: ChannelData padded to a multiple of four bytes.
pub(crate) fn to_stream(datagram: &[u8]) -> Vec<u8> {
    let mut out = datagram.to_vec();
    if datagram.first().is_some_and(|b| b >> 6 == 0b01) {
        out.resize(datagram.len().next_multiple_of(4), 0);
    }
    out
}

/// How webrtc-rs reaches one TURN server over a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamServer {
    /// `host:port` to connect to.
    pub(crate) address: String,
    /// The name its certificate must carry; `None`: plain TCP.
    pub(crate) tls_name: Option<String>,
}

impl StreamServer {
    /// The server a `turn:…?transport=tcp` or `turns:` URL names; `None` for UDP TURN and
    /// STUN, which webrtc-rs handles itself.
    pub(crate) fn from_url(url: &str) -> Option<Self> {
        let (secure, rest) = if let Some(rest) = url.strip_prefix("turns:") {
            (true, rest)
        } else {
            (false, url.strip_prefix("turn:")?)
        };
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let transport = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("transport="))
            .unwrap_or(if secure { "tcp" } else { "udp" });
        if !transport.eq_ignore_ascii_case("tcp") {
            return None;
        }
        let default_port = if secure { 5349 } else { 3478 };
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            Some(p) => p.parse::<u16>().ok()?,
            None => default_port,
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        Some(Self {
            address: format!("{host}:{port}"),
            tls_name: secure.then(|| bare.to_owned()),
        })
    }
}

/// `host` and an optional port out of `host[:port]` (`[v6]:port` too).
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.is_empty() {
        return None;
    }
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        return Some((host, rest.strip_prefix(':')));
    }
    Some(match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (authority, None),
    })
}

/// A running bridge; stops when dropped.
#[derive(Debug)]
pub(crate) struct TurnBridge {
    /// Where webrtc-rs sends: give it `turn:<addr>?transport=udp`.
    pub(crate) local: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TurnBridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TurnBridge {
    /// Binds the loopback socket and serves it until dropped.
    pub(crate) async fn start(server: StreamServer) -> std::io::Result<Self> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let local = socket.local_addr()?;
        let task = tokio::spawn(serve(socket, server));
        Ok(Self { local, task })
    }
}

async fn serve(socket: Arc<UdpSocket>, server: StreamServer) {
    let server = Arc::new(server);
    let mut sources: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut buf = vec![0u8; 0x1_0000];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Some(datagram) = buf.get(..n) else {
            continue;
        };
        sources.retain(|_, tx| !tx.is_closed());
        let tx = match sources.get(&from) {
            Some(tx) => tx.clone(),
            None if sources.len() < MAX_SOURCES => {
                let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
                tokio::spawn(relay_source(socket.clone(), from, server.clone(), rx));
                sources.insert(from, tx.clone());
                tx
            }
            None => {
                tracing::warn!(%from, "TURN bridge: too many local sockets, datagram dropped");
                continue;
            }
        };
        // Full: dropped, as a congested network drops it.
        let _ = tx.try_send(to_stream(datagram));
    }
}

/// One local socket's connection to the server: its datagrams out, the server's back.
async fn relay_source(
    socket: Arc<UdpSocket>,
    source: SocketAddr,
    server: Arc<StreamServer>,
    rx: mpsc::Receiver<Vec<u8>>,
) {
    let tcp = match TcpStream::connect(&server.address).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(server = %server.address, "TURN over TCP: cannot connect: {e}");
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let result = match &server.tls_name {
        None => pump(tcp, &socket, source, rx).await,
        Some(name) => match tls_connect(tcp, name).await {
            Ok(tls) => pump(tls, &socket, source, rx).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        tracing::warn!(server = %server.address, "TURN over a stream ended: {e}");
    }
}

async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    socket: &UdpSocket,
    source: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let (mut read, mut write) = tokio::io::split(stream);
    let writer = async {
        while let Some(bytes) = rx.recv().await {
            write.write_all(&bytes).await?;
        }
        Ok::<(), std::io::Error>(())
    };
    let reader = async {
        let mut framer = StreamFramer::default();
        let mut chunk = vec![0u8; 0x4000];
        loop {
            let n = read.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            framer.push(chunk.get(..n).unwrap_or_default());
            while let Some(datagram) = framer
                .next_datagram()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            {
                socket.send_to(&datagram, source).await?;
            }
        }
    };
    tokio::select! {
        r = writer => r,
        r = reader => r,
    }
}

async fn tls_connect(
    tcp: TcpStream,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_over_streams_get_a_bridge_and_udp_ones_do_not() {
        let tcp = StreamServer::from_url("turn:t.example:3479?transport=tcp");
        assert_eq!(
            tcp,
            Some(StreamServer {
                address: "t.example:3479".into(),
                tls_name: None
            })
        );
        let tls = StreamServer::from_url("turns:t.example").unwrap();
        assert_eq!(tls.address, "t.example:5349");
        assert_eq!(tls.tls_name.as_deref(), Some("t.example"));
        let v6 = StreamServer::from_url("turn:[::1]:4000?transport=TCP").unwrap();
        assert_eq!(v6.address, "[::1]:4000");
        assert_eq!(StreamServer::from_url("turn:t.example:3478"), None);
        assert_eq!(StreamServer::from_url("turn:t.example?transport=udp"), None);
        assert_eq!(StreamServer::from_url("stun:t.example:3478"), None);
        assert_eq!(StreamServer::from_url("turn:?transport=tcp"), None);
        assert_eq!(StreamServer::from_url("turn:h:99999?transport=tcp"), None);
    }

    fn stun(len: u16) -> Vec<u8> {
        let mut m = vec![0x00, 0x01];
        m.extend(len.to_be_bytes());
        m.extend([0x21, 0x12, 0xA4, 0x42]);
        m.extend([7u8; 12]);
        m.extend(vec![1u8; usize::from(len)]);
        m
    }

    fn channel_data(len: u16) -> Vec<u8> {
        let mut m = vec![0x40, 0x00];
        m.extend(len.to_be_bytes());
        m.extend(vec![9u8; usize::from(len)]);
        m
    }

    #[test]
    fn datagrams_come_out_of_the_stream_whole_and_unpadded_however_it_is_cut() {
        let datagrams = [
            stun(8),
            channel_data(5),
            channel_data(8),
            stun(0),
            channel_data(1),
        ];
        let stream: Vec<u8> = datagrams.iter().flat_map(|d| to_stream(d)).collect();
        assert_eq!(to_stream(&channel_data(5)).len(), 12, "padded to four");
        assert_eq!(to_stream(&stun(8)).len(), 28, "STUN is never padded");
        for cut in 1..stream.len() {
            let mut framer = StreamFramer::default();
            let mut out = Vec::new();
            for piece in stream.chunks(cut) {
                framer.push(piece);
                while let Some(d) = framer.next_datagram().unwrap() {
                    out.push(d);
                }
            }
            assert_eq!(out, datagrams, "cut every {cut} bytes");
            assert_eq!(framer.buffered(), 0);
        }
    }

    #[test]
    fn a_stream_that_is_not_turn_is_an_error() {
        let mut framer = StreamFramer::default();
        // A TLS record (a TLS server reached as plain TCP): no magic cookie.
        framer.push(b"\x16\x03\x03\x00\x02\x02\x28");
        assert_eq!(framer.next_datagram(), Ok(None), "not yet eight bytes");
        framer.push(b"\x00");
        assert_eq!(framer.next_datagram(), Err(FrameError::NotTurn(0x16)));
        let mut framer = StreamFramer::default();
        framer.push(&[0x80; 8]);
        assert_eq!(framer.next_datagram(), Err(FrameError::NotTurn(0x80)));
    }

    use crate::fuzz_support as support;

    /// Fuzz target `turn_stream`: bytes from a TURN server, cut anywhere, give the
    /// same datagrams as the whole stream does, each at most a message long, and never hold
    /// more than one message and the bytes pushed after it.
    #[test]
    fn fuzz_turn_stream() {
        support::fuzz("turn_stream", support::ITERATIONS, |bytes| {
            // Most inputs are TURN: a few messages the bytes choose (STUN, ChannelData of
            // odd lengths, or a stray byte that breaks the framing), then the rest raw.
            let mut choices = support::Choices(bytes);
            let cut = 1 + choices.below(64);
            let mut stream = Vec::new();
            for _ in 0..choices.below(6) {
                match choices.byte() % 4 {
                    0 => stream.extend(stun(u16::from(choices.byte() % 8) * 4)),
                    1 | 2 => {
                        stream.extend(to_stream(&channel_data(u16::from(choices.byte() % 16))))
                    }
                    _ => stream.push(choices.byte()),
                }
            }
            stream.extend_from_slice(choices.0);
            let stream = stream.as_slice();
            let whole = {
                let mut f = StreamFramer::default();
                f.push(stream);
                let mut out = Vec::new();
                while let Ok(Some(d)) = f.next_datagram() {
                    out.push(d);
                }
                out
            };
            let mut f = StreamFramer::default();
            let mut out = Vec::new();
            'pieces: for piece in stream.chunks(cut) {
                f.push(piece);
                loop {
                    match f.next_datagram() {
                        Ok(Some(d)) => {
                            assert!(d.len() <= MAX_MESSAGE);
                            out.push(d);
                        }
                        Ok(None) => break,
                        Err(_) => break 'pieces,
                    }
                }
                assert!(f.buffered() <= MAX_MESSAGE + cut);
            }
            assert_eq!(out, whole);
        });
    }
}
