//! webrtc-rs's tokio runtime with one change, for calls through a TURN relay and for every
//! connection's setup.
//!
//! webrtc 0.21.1's driver loop (`peer_connection/driver.rs`) drains the TURN relayer's
//! outgoing queue *before* the core's writes, and the core's writes to a relayed address are
//! only queued into that relayer (`turn_relayer.rs`, `handle_write`). So every packet the
//! call sends through the relay waits in the queue until something wakes the loop again: a
//! datagram, an application write or the next protocol timer. During setup nothing else
//! wakes it, and each ICE check and DTLS flight waits for a retransmission timer (relay-only
//! connect measured 2.2–4.4 s on loopback); during the call RTCP and the last packet of each
//! burst wait for the next frame (relay round trip measured ~400 ms). The upstream bug and
//! its reproduction are in docs/PERFORMANCE.md.
//!
//! The loop sleeps through [`Runtime::sleep`], and that is what this runtime bounds: while
//! [`RelayPump`] is on, no sleep lasts longer than [`PUMP_INTERVAL`], so a stranded packet
//! leaves within it. The pump is on while a relay may carry our packets (a TURN server
//! is configured and the connection has not yet picked a pair, or the pair it picked starts
//! at our relay candidate) and is turned off before the connection closes.
//!
//! It is also on during every setup, relayed or not (from the connection's creation to
//! connected, and from an ICE restart or the other side's new checks until ICE connects
//! again): the driver strands core writes on direct paths too, less often but during setup
//! just as badly. A DTLS ClientHello queued by the core after ICE connects waited about 21 ms
//! for the next wake-up; with the pump on, join → connected on loopback fell from 86 to 56 ms
//! (p50; docs/PERFORMANCE.md, "Setup"). Setup lasts tens of milliseconds, and the 1,000
//! wake-ups a second last only as long. The other sleeps
//! in webrtc-rs (a data channel's 50 ms backpressure re-check) are liveness backstops that a
//! shorter sleep only re-checks sooner.
//!
//! The better fix is a driver of our own over the sans-IO core; it is 2,500 lines of
//! upstream's driver plus 1,100 of its TURN relayer, and this bound gets the relay within the
//! goals (docs/PERFORMANCE.md) at a cost measured there.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
    TokioRuntime,
};

/// The longest a pumped driver sleeps: a relayed packet waits at most this long.
pub(crate) const PUMP_INTERVAL: Duration = Duration::from_millis(1);

/// Whether the driver's sleeps are bounded by [`PUMP_INTERVAL`]; shared with the runtime.
#[derive(Debug, Clone, Default)]
pub(crate) struct RelayPump(Arc<AtomicBool>);

impl RelayPump {
    pub(crate) fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    pub(crate) fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A sleep of `requested`, bounded while the pump is on.
    fn bound(&self, requested: Duration) -> Duration {
        if self.is_on() {
            requested.min(PUMP_INTERVAL)
        } else {
            requested
        }
    }
}

/// [`TokioRuntime`] with its sleeps bounded by a [`RelayPump`].
#[derive(Debug)]
pub(crate) struct PumpedRuntime {
    inner: TokioRuntime,
    pump: RelayPump,
}

impl PumpedRuntime {
    pub(crate) fn new(pump: RelayPump) -> Self {
        Self {
            inner: TokioRuntime,
            pump,
        }
    }
}

impl Runtime for PumpedRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        self.inner.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(self.pump.bound(duration))
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future);
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "liveloop-pumped-tokio"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_are_bounded_only_while_the_pump_is_on() {
        let pump = RelayPump::default();
        assert_eq!(
            pump.bound(Duration::from_secs(1)),
            Duration::from_secs(1),
            "off by default"
        );
        pump.set(true);
        assert_eq!(pump.bound(Duration::from_secs(1)), PUMP_INTERVAL);
        assert_eq!(
            pump.bound(Duration::from_micros(200)),
            Duration::from_micros(200)
        );
        pump.set(false);
        assert_eq!(
            pump.bound(Duration::from_millis(50)),
            Duration::from_millis(50)
        );
    }
}
