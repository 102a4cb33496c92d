//! A small network lab for the quality harness: each client in a network namespace of its own,
//! joined to the others by a user-space router that can impair one client's access link.
//!
//! Why not `tc netem`: this project's machines run a kernel without the netem qdisc (and
//! without tc classifiers), so loss, delay and jitter are applied here instead. Every client
//! namespace gets a TUN device holding `10.77.0.<n>/24` with its default route through it; the
//! root namespace gets `10.77.0.1` (where the signaling server listens). The router reads IPv4
//! packets from the TUN devices and writes each to the device owning its destination, through
//! [`Link`] when the packet crosses the impaired client's access link (either direction).
//!
//! The TUN ioctl and `poll` are the crate's only `unsafe` calls, each with its invariant.
//!
//! [`Link`] is the model, sans-IO: it takes a packet's size and the time, and says when to
//! deliver it, or to drop it. [`NetLab`] is the driver: namespaces, devices, one router thread.

#![allow(unsafe_code)]

use std::collections::{BinaryHeap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng};

use anyhow::{Context, Result, bail};

/// What one access link does to the packets crossing it, in each direction.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Share of packets lost at random, 0..=1.
    pub loss: f64,
    /// One-way delay added (half the round trip the link adds).
    pub delay: Duration,
    /// Each packet's delay varies uniformly by up to this much either way (packets may
    /// reorder, as with netem).
    pub jitter: Duration,
    /// A rate cap in bit/s, with a drop-tail queue of [`QUEUE_LIMIT`].
    pub rate_bps: Option<u64>,
}

/// How much a capped link queues before it drops (a typical home router's buffer, in time).
pub const QUEUE_LIMIT: Duration = Duration::from_millis(250);

/// One direction of an access link: the impairment model, sans-IO.
#[derive(Debug)]
pub struct Link {
    pub impairment: Impairment,
    rng: rand::rngs::StdRng,
    /// When the rate-capped line is free again.
    busy_until: Option<Instant>,
}

impl Link {
    #[must_use]
    pub fn new(impairment: Impairment, seed: u64) -> Self {
        Self {
            impairment,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            busy_until: None,
        }
    }

    fn random(&mut self) -> f64 {
        self.rng.random()
    }

    /// When a packet of `len` bytes that arrives `now` leaves the link; `None` if it is lost.
    pub fn admit(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let imp = self.impairment;
        if imp.loss > 0.0 && self.random() < imp.loss {
            return None;
        }
        let mut out = now;
        if let Some(rate) = imp.rate_bps.filter(|r| *r > 0) {
            let start = self.busy_until.filter(|b| *b > now).unwrap_or(now);
            if start.duration_since(now) > QUEUE_LIMIT {
                return None;
            }
            let serialise = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
            out = start + serialise;
            self.busy_until = Some(out);
        }
        let jitter = imp.jitter.as_secs_f64() * (2.0 * self.random() - 1.0);
        let delay = (imp.delay.as_secs_f64() + jitter).max(0.0);
        Some(out + Duration::from_secs_f64(delay))
    }
}

/// The addresses the lab uses: the root namespace (servers) and client `n` (from 0).
#[must_use]
pub fn root_addr() -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 1)
}

#[must_use]
pub fn client_addr(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 2 + n as u8)
}

/// A running lab; dropping it removes the namespaces and devices.
#[derive(Debug)]
pub struct NetLab {
    /// The namespace of each client, in order.
    pub namespaces: Vec<String>,
    devices: Vec<String>,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    router: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    impaired: Ipv4Addr,
    up: Link,
    down: Link,
    /// UDP across the impaired client's link only to and from this address (a strict
    /// firewall that lets UDP reach the TURN server alone); `None`: all UDP.
    udp_only_with: Option<Ipv4Addr>,
}

/// Whether the firewall of [`NetLab::allow_udp_only_with`] lets an IPv4 packet from `src` to
/// `dst` through: anything but UDP passes, and UDP across `impaired`'s link only with `allowed`.
fn firewall_admits(
    packet: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    impaired: Ipv4Addr,
    allowed: Option<Ipv4Addr>,
) -> bool {
    const UDP: u8 = 17;
    let Some(allowed) = allowed else { return true };
    let udp = packet.get(9) == Some(&UDP);
    let crosses = src == impaired || dst == impaired;
    !(udp && crosses) || src == allowed || dst == allowed
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Opens the persistent TUN device `name` (made with `ip tuntap add`).
fn open_tun(name: &str) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .context("cannot open /dev/net/tun")?;
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let mut req = IfReq {
        name: [0; 16],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    let bytes = name.as_bytes();
    if bytes.len() >= req.name.len() {
        bail!("device name {name} is too long");
    }
    req.name
        .get_mut(..bytes.len())
        .context("device name")?
        .copy_from_slice(bytes);
    // SAFETY: TUNSETIFF reads an ifreq; `req` is one, laid out as the kernel's struct ifreq
    // (16-byte name, then the flags in a 24-byte union), and lives across the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
    if rc < 0 {
        bail!("TUNSETIFF {name}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: F_SETFL on a descriptor this function owns.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    Ok(file)
}

impl NetLab {
    /// Makes a namespace per client (`<prefix>-<client>`), each at [`client_addr`], and the
    /// root namespace's [`root_addr`]; client `impaired` gets the impaired access link.
    /// Needs root (or CAP_NET_ADMIN).
    ///
    /// # Errors
    /// When a namespace or device cannot be made (not root, no TUN support).
    pub fn start(prefix: &str, clients: &[&str], impaired: usize) -> Result<Self> {
        let mut lab = Self {
            namespaces: Vec::new(),
            devices: Vec::new(),
            shared: Arc::new(Mutex::new(Shared {
                impaired: client_addr(impaired),
                up: Link::new(Impairment::default(), 0x1234_5678),
                down: Link::new(Impairment::default(), 0x8765_4321),
                udp_only_with: None,
            })),
            stop: Arc::new(AtomicBool::new(false)),
            router: None,
        };
        lab.cleanup_stale(prefix, clients);
        let mut tuns: Vec<(Ipv4Addr, File)> = Vec::new();
        let root_dev = format!("{prefix}-r");
        ip(&["tuntap", "add", "dev", &root_dev, "mode", "tun"])?;
        lab.devices.push(root_dev.clone());
        tuns.push((root_addr(), open_tun(&root_dev)?));
        ip(&[
            "addr",
            "add",
            &format!("{}/24", root_addr()),
            "dev",
            &root_dev,
        ])?;
        ip(&["link", "set", &root_dev, "up"])?;
        for (n, client) in clients.iter().enumerate() {
            let ns = format!("{prefix}-{client}");
            let dev = format!("{prefix}-t{n}");
            ip(&["netns", "add", &ns])?;
            lab.namespaces.push(ns.clone());
            ip(&["tuntap", "add", "dev", &dev, "mode", "tun"])?;
            let tun = open_tun(&dev)?;
            ip(&["link", "set", &dev, "netns", &ns])?;
            let addr = client_addr(n);
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &dev])?;
            ip(&["-n", &ns, "link", "set", &dev, "up"])?;
            ip(&["-n", &ns, "route", "add", "default", "dev", &dev])?;
            tuns.push((addr, tun));
        }
        let (shared, stop) = (lab.shared.clone(), lab.stop.clone());
        lab.router = Some(std::thread::spawn(move || route(&tuns, &shared, &stop)));
        Ok(lab)
    }

    fn cleanup_stale(&self, prefix: &str, clients: &[&str]) {
        // A killed earlier run can leave these behind.
        for client in clients {
            let _ = ip(&["netns", "del", &format!("{prefix}-{client}")]);
        }
        let _ = ip(&["link", "del", &format!("{prefix}-r")]);
    }

    /// Takes the default route out of every client namespace: each keeps only the route to
    /// its /24, a LAN with no gateway (and no multicast route, so joining the mDNS group
    /// fails with ENODEV).
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn remove_default_routes(&self) -> Result<()> {
        for ns in &self.namespaces {
            ip(&["-n", ns, "route", "del", "default"])?;
        }
        Ok(())
    }

    /// Sets the impaired link's behaviour (both directions), from now on.
    /// From now on the impaired client sends and receives UDP only to and from `addr`
    /// (TCP and everything else as before): a strict firewall.
    pub fn allow_udp_only_with(&self, addr: Ipv4Addr) {
        crate::lock(&self.shared).udp_only_with = Some(addr);
    }

    pub fn impair(&self, impairment: Impairment) {
        let mut s = crate::lock(&self.shared);
        s.up.impairment = impairment;
        s.down.impairment = impairment;
    }

    /// A command that runs `program` inside client `n`'s namespace.
    #[must_use]
    pub fn command(&self, n: usize, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec"])
            .arg(self.namespaces.get(n).map_or("", String::as_str))
            .arg(program);
        c
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.router.take() {
            let _ = r.join();
        }
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        for dev in &self.devices {
            let _ = ip(&["link", "del", dev]);
        }
    }
}

/// A packet waiting for its delivery time (earliest first).
struct Pending {
    at: Instant,
    seq: u64,
    to: usize,
    packet: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The router loop: read every device, schedule, deliver on time.
fn route(tuns: &[(Ipv4Addr, File)], shared: &Mutex<Shared>, stop: &AtomicBool) {
    let owner: HashMap<Ipv4Addr, usize> =
        tuns.iter().enumerate().map(|(i, (a, _))| (*a, i)).collect();
    let mut queue: BinaryHeap<Pending> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 65_536];
    let mut fds: Vec<libc::pollfd> = tuns
        .iter()
        .map(|(_, f)| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while queue.peek().is_some_and(|p| p.at <= now) {
            if let Some(p) = queue.pop()
                && let Some((_, mut dev)) = tuns.get(p.to).map(|(a, f)| (a, f))
            {
                // A full device queue drops the packet, as a real link would.
                let _ = dev.write(&p.packet);
            }
        }
        let wait_ms = queue.peek().map_or(50, |p| {
            p.at.saturating_duration_since(now).as_millis().clamp(0, 50) as i32
        });
        // SAFETY: `fds` is a live, correctly sized array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if n <= 0 {
            continue;
        }
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            let Some((_, mut dev)) = tuns.get(i).map(|(a, f)| (a, f)) else {
                continue;
            };
            while let Ok(len) = dev.read(&mut buf) {
                let Some(packet) = buf.get(..len) else { break };
                // IPv4 only: version 4, destination at bytes 16..20.
                if len < 20 || packet.first().is_none_or(|b| b >> 4 != 4) {
                    continue;
                }
                let addr = |at: usize| {
                    packet
                        .get(at..at + 4)
                        .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                };
                let (Some(src), Some(dst)) = (addr(12), addr(16)) else {
                    continue;
                };
                let Some(&to) = owner.get(&dst) else { continue };
                let now = Instant::now();
                let at = {
                    let mut s = crate::lock(shared);
                    let impaired = s.impaired;
                    if !firewall_admits(packet, src, dst, impaired, s.udp_only_with) {
                        None
                    } else if src == impaired {
                        s.up.admit(now, len)
                    } else if dst == impaired {
                        s.down.admit(now, len)
                    } else {
                        Some(now)
                    }
                };
                if let Some(at) = at {
                    seq += 1;
                    queue.push(Pending {
                        at,
                        seq,
                        to,
                        packet: packet.to_vec(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firewall_lets_udp_cross_only_with_the_allowed_address() {
        let (me, other, turn) = (client_addr(0), client_addr(1), root_addr());
        let mut udp = vec![0x45u8; 20];
        udp[9] = 17;
        let mut tcp = udp.clone();
        tcp[9] = 6;
        assert!(
            firewall_admits(&udp, me, other, me, None),
            "off: all passes"
        );
        assert!(!firewall_admits(&udp, me, other, me, Some(turn)));
        assert!(!firewall_admits(&udp, other, me, me, Some(turn)));
        assert!(firewall_admits(&udp, me, turn, me, Some(turn)));
        assert!(firewall_admits(&udp, turn, me, me, Some(turn)));
        assert!(
            firewall_admits(&tcp, me, other, me, Some(turn)),
            "TCP passes"
        );
        assert!(
            firewall_admits(&udp, other, turn, me, Some(turn)),
            "another client's UDP is not filtered"
        );
    }

    #[test]
    fn a_clean_link_delivers_at_once() {
        let mut l = Link::new(Impairment::default(), 1);
        let now = Instant::now();
        assert_eq!(l.admit(now, 1200), Some(now));
    }

    #[test]
    fn loss_drops_about_its_share() {
        let mut l = Link::new(
            Impairment {
                loss: 0.05,
                ..Impairment::default()
            },
            42,
        );
        let now = Instant::now();
        let lost = (0..100_000).filter(|_| l.admit(now, 100).is_none()).count();
        assert!((4_500..5_500).contains(&lost), "{lost}");
    }

    #[test]
    fn delay_and_jitter_stay_in_their_window() {
        let mut l = Link::new(
            Impairment {
                delay: Duration::from_millis(50),
                jitter: Duration::from_millis(10),
                ..Impairment::default()
            },
            7,
        );
        let now = Instant::now();
        let delays: Vec<f64> = (0..10_000)
            .filter_map(|_| l.admit(now, 100))
            .map(|t| t.duration_since(now).as_secs_f64() * 1000.0)
            .collect();
        assert_eq!(delays.len(), 10_000);
        assert!(delays.iter().all(|d| (40.0..=60.0).contains(d)));
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        assert!((49.0..51.0).contains(&mean), "{mean}");
    }

    #[test]
    fn a_rate_cap_paces_and_drops_past_its_queue() {
        let mut l = Link::new(
            Impairment {
                rate_bps: Some(1_000_000),
                ..Impairment::default()
            },
            3,
        );
        let now = Instant::now();
        // 1250-byte packets take 10 ms each at 1 Mbit/s.
        let first = l.admit(now, 1250).unwrap();
        let second = l.admit(now, 1250).unwrap();
        assert_eq!(first.duration_since(now), Duration::from_millis(10));
        assert_eq!(second.duration_since(now), Duration::from_millis(20));
        // A burst queues up to the limit, then drops.
        let admitted = (0..100).filter(|_| l.admit(now, 1250).is_some()).count();
        assert_eq!(
            admitted, 24,
            "250 ms of queue at 10 ms a packet, less the two above"
        );
        // Later, the line is free again.
        let later = now + Duration::from_secs(1);
        assert_eq!(
            l.admit(later, 1250),
            Some(later + Duration::from_millis(10))
        );
    }
}
