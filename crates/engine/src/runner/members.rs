//! The participants of a call: a peer, its send tasks and decoders per member, added and
//! removed here; who is present or gone is `core::membership`'s call.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The audio playout state of one participant (one lock: libopus state is not `Sync`).
pub(super) struct Playback {
    /// Packets with their RTP timestamps (lip sync needs to know what is playing), stepped by
    /// the sender's frame length (10 ms from LiveLoop, 20 ms from browsers: see `push`).
    pub(super) jitter: JitterBuffer<(u32, Bytes)>,
    pub(super) opus: Option<OpusDecoder>,
    /// Decoded samples not yet played: a 20 ms packet plays over two 10 ms ticks. At most one
    /// packet's worth (the playout decodes only when fewer than a tick's are left).
    pub(super) pending: std::collections::VecDeque<f32>,
}

impl Playback {
    pub(super) fn new() -> Self {
        Self {
            jitter: JitterBuffer::new(48_000, Duration::from_millis(20)),
            opus: OpusDecoder::new().ok(),
            pending: std::collections::VecDeque::new(),
        }
    }

    /// An audio packet arrived at `now`. The jitter buffer steps by the packet's own length
    /// (its Opus table of contents): when a sender's frame length differs from the buffer's
    /// (the first packet, or a sender that changes it), the buffer starts again at that
    /// length. Packets of other lengths than 10, 20, 40 or 60 ms are not played.
    pub(super) fn push(&mut self, rtp_timestamp: u32, now: Duration, packet: Bytes) {
        let Some(samples) = liveloop_media::opus::packet_samples(&packet) else {
            return;
        };
        if !matches!(samples, 480 | 960 | 1920 | 2880) {
            return;
        }
        let frame = Duration::from_micros(samples as u64 * 1_000_000 / 48_000);
        if frame != self.jitter.frame() {
            tracing::debug!(?frame, "the sender's audio frame length changed");
            self.jitter = JitterBuffer::new(48_000, frame);
        }
        self.jitter
            .push(rtp_timestamp, now, (rtp_timestamp, packet));
    }
}

pub(super) struct Member {
    pub(super) peer: Arc<Peer>,
    pub(super) polite: bool,
    pub(super) decoder: media::DecoderQueue,
    /// The decoder of this participant's screen share, started with its first frame.
    pub(super) screen_decoder: Option<media::DecoderQueue>,
    /// The codec our video goes to this participant as (from the negotiation), and the two
    /// tasks that feed it camera and screen frames of that codec.
    pub(super) sending_as: Option<VideoCodec>,
    pub(super) video_tasks: Vec<JoinHandle<()>>,
    /// The camera layer this participant gets (`core::layers`); its camera task follows it.
    pub(super) layer: tokio::sync::watch::Sender<Layer>,
    /// What this participant's last state message said about sharing: frames that trail the
    /// end of a share are dropped instead of starting a new decoder.
    pub(super) screen_on: bool,
    pub(super) screen_keyframe_needed: Arc<AtomicBool>,
    pub(super) counters: Arc<DecodeCounters>,
    pub(super) sync: Arc<SyncState>,
    pub(super) keyframe_needed: Arc<AtomicBool>,
    pub(super) video_losses: AtomicU64,
    /// What the playout thread plays of this participant (also in the roster).
    pub(super) slot: Arc<Slot>,
    /// The DTLS fingerprint of this participant's first description: one with another is
    /// another peer connection under the same id, never this call.
    pub(super) fingerprint: Option<String>,
    pub(super) tasks: Vec<JoinHandle<()>>,
    pub(super) last: (Instant, Snapshot),
}

impl Runner {
    pub(super) async fn drop_all_members(&mut self) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.remove_member(&id).await;
            self.emit(EngineEvent::PeerLeft { id }).await;
        }
    }

    pub(super) async fn add_member(
        &mut self,
        other: String,
        polite: bool,
        make_offer: bool,
        peer_tx: &mpsc::Sender<(String, PeerEvent)>,
    ) {
        // Listed again (after a server restart or a reconnect): the call never stopped.
        if !self.membership.join(&other) && self.members.contains_key(&other) {
            return;
        }
        let (tx, mut rx) = mpsc::channel(4096);
        let options = PeerOptions {
            polite,
            udp_addrs: self.config.udp_addrs.clone(),
            ice_servers: self.config.ice_servers.clone(),
            relay_only: self.config.relay_only,
        };
        let peer = match Peer::new(options, tx).await {
            Ok(p) => Arc::new(p),
            Err(e) => {
                self.membership.remove(&other);
                self.error(ErrorKind::PeerGone, format!("peer for {other}: {e}"))
                    .await;
                return;
            }
        };
        let mut tasks = Vec::new();
        // Forward this peer's events, tagged, to the loop.
        let (fwd, name) = (peer_tx.clone(), other.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if fwd.send((name.clone(), ev)).await.is_err() {
                    return;
                }
            }
        }));
        // Audio from the shared encoder (sends fail, harmlessly, before negotiation); video
        // once the negotiation said in which codec (`PeerEvent::SendVideoAs`).
        let (sender, mut packets) = (peer.clone(), self.encoded_audio.subscribe());
        tasks.push(tokio::spawn(async move {
            loop {
                match packets.recv().await {
                    Ok(p) => {
                        // The RTP timestamp advances by the packet's own length (10 ms, or
                        // 20 ms on a tiny link).
                        let samples = liveloop_media::opus::packet_samples(&p).unwrap_or(480);
                        let duration = Duration::from_micros(samples as u64 * 1_000_000 / 48_000);
                        let _ = sender.send_audio(p, duration).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }));
        let counters = Arc::new(DecodeCounters::default());
        let keyframe_needed = Arc::new(AtomicBool::new(false));
        let sync = Arc::new(SyncState::default());
        let decoder = media::start_decoder(
            other.clone(),
            self.events.clone(),
            counters.clone(),
            keyframe_needed.clone(),
            sync.clone(),
        );
        if make_offer && let Err(e) = peer.start_offer().await {
            self.error(ErrorKind::Signaling, format!("offer to {other}: {e}"))
                .await;
        }
        let slot = Arc::new(Slot {
            playback: Mutex::new(Playback::new()),
            sync: sync.clone(),
            connected: AtomicBool::new(false),
        });
        lock(&self.roster).insert(other.clone(), slot.clone());
        self.members.insert(
            other,
            Member {
                peer,
                polite,
                decoder,
                screen_decoder: None,
                sending_as: None,
                video_tasks: Vec::new(),
                layer: tokio::sync::watch::Sender::new(Layer::Main),
                screen_on: false,
                screen_keyframe_needed: Arc::new(AtomicBool::new(false)),
                counters,
                sync,
                keyframe_needed,
                video_losses: AtomicU64::new(0),
                slot,
                fingerprint: None,
                tasks,
                last: (Instant::now(), Snapshot::default()),
            },
        );
    }

    /// Closes a participant's connection and ends every task and thread it had.
    pub(super) async fn remove_member(&mut self, id: &str) {
        self.membership.remove(id);
        // The playout thread notices, and tells if that participant was speaking.
        lock(&self.roster).remove(id);
        if let Some(m) = self.members.remove(id) {
            for task in m.tasks.iter().chain(&m.video_tasks) {
                task.abort();
            }
            let _ = m.peer.close().await;
            // Dropping `m` drops the decoder's sender: its thread ends.
        }
    }

    /// The negotiation with `from` chose `codec` for our video: its camera and screen frames
    /// come from that codec's shared encoders from now on (an encoder runs while some peer
    /// takes its codec), starting with a keyframe. The camera's come from the layer
    /// `core::layers` gives this participant.
    pub(super) fn send_video_as(&mut self, from: &str, codec: VideoCodec) {
        let Some(m) = self.members.get_mut(from) else {
            return;
        };
        if m.sending_as == Some(codec) {
            return;
        }
        for task in m.video_tasks.drain(..) {
            task.abort();
        }
        m.sending_as = Some(codec);
        let layer = *m.layer.borrow();
        m.video_tasks.push(tokio::spawn(send_camera(
            m.peer.clone(),
            self.encoded.clone(),
            codec,
            m.layer.subscribe(),
        )));
        let (sender, mut frames) = (m.peer.clone(), self.encoded_screen.of(codec).subscribe());
        m.video_tasks.push(tokio::spawn(async move {
            loop {
                match frames.recv().await {
                    Ok(v) => {
                        let _ = sender.send_screen(codec, v.data, v.duration).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }));
        self.flags.request_keyframe(layer, codec);
        if let Some(screen) = &self.screen {
            screen.keyframe.request(codec);
        }
    }

    /// `core::layers` moved `id` to `layer`: its camera task switches at that layer's next
    /// keyframe, asked for now.
    pub(super) fn set_layer(&mut self, id: &str, layer: Layer) {
        let Some(m) = self.members.get(id) else {
            return;
        };
        if *m.layer.borrow() == layer {
            return;
        }
        tracing::debug!(peer = id, ?layer, "camera layer");
        m.layer.send_replace(layer);
        if let Some(codec) = m.sending_as {
            self.flags.request_keyframe(layer, codec);
        }
    }

    /// A connection failed: the impolite side restarts ICE (the polite side answers the new
    /// offer); after [`MAX_RESTARTS`] the participant is given up on.
    pub(super) async fn on_failed(&mut self, from: &str) {
        let Some(m) = self.members.get(from) else {
            return;
        };
        let (polite, peer) = (m.polite, m.peer.clone());
        match self.membership.failed(from) {
            Failed::Gone => {
                self.remove_member(from).await;
                self.error(
                    ErrorKind::PeerGone,
                    format!("the connection to {from} failed"),
                )
                .await;
                self.emit(EngineEvent::PeerLeft {
                    id: from.to_owned(),
                })
                .await;
            }
            Failed::Restart if !polite => {
                if let Err(e) = peer.restart_ice().await {
                    self.error(ErrorKind::PeerGone, format!("ICE restart with {from}: {e}"))
                        .await;
                }
            }
            // The polite side waits for the impolite side's new offer.
            Failed::Restart => {}
        }
        self.update_state().await;
    }

    /// This computer's network changed (`core::netwatch`): every call restarts ICE at once,
    /// whichever side is polite (perfect negotiation settles a collision), on sockets bound
    /// afresh to the interfaces there are now; the media tracks and the data channel carry
    /// on, so nobody rejoins.
    pub(super) async fn on_network_change(&mut self) {
        // First the signaling: a connection over the address that went away reconnects now,
        // and the offers below wait for it (`signal::rooms`, queued while away).
        self.session.network_changed().await;
        let mut restarted = 0;
        for (id, m) in &self.members {
            match m.peer.restart_ice().await {
                Ok(()) => restarted += 1,
                Err(e) => {
                    tracing::warn!(peer = %id, error = %e, "ICE restart after a network change")
                }
            }
        }
        self.emit(EngineEvent::NetworkChanged { restarted }).await;
    }

    /// Participants whose grace ran out (`core::membership`) are let go.
    pub(super) async fn expire_absent(&mut self) {
        let expired = self.membership.expired(self.epoch.elapsed());
        for id in expired {
            self.remove_member(&id).await;
            self.emit(EngineEvent::PeerLeft { id }).await;
        }
        if !self.members.is_empty() {
            self.update_state().await;
        }
    }
}

/// Sends one participant our camera in `codec`, from the layer `layer` says. A change of
/// layer takes effect at the new layer's first keyframe: until then the old layer's frames
/// go on, so the receiver never waits on frames it cannot decode.
async fn send_camera(
    peer: Arc<Peer>,
    camera: media::CameraOut,
    codec: VideoCodec,
    mut layer: tokio::sync::watch::Receiver<Layer>,
) {
    let mut current = camera.of(*layer.borrow_and_update()).of(codec).subscribe();
    // The layer being switched to, until its keyframe.
    let mut next: Option<broadcast::Receiver<media::EncodedVideo>> = None;
    loop {
        let frame = tokio::select! {
            changed = layer.changed() => {
                if changed.is_err() {
                    return;
                }
                next = Some(camera.of(*layer.borrow_and_update()).of(codec).subscribe());
                continue;
            }
            Some(v) = recv_keyframe(next.as_mut()) => {
                if let Some(n) = next.take() {
                    current = n;
                }
                Ok(v)
            }
            v = current.recv() => v,
        };
        match frame {
            Ok(v) => {
                let _ = peer.send_video(codec, v.data, v.duration).await;
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The next keyframe from `rx` (other frames are skipped); never, without `rx` or once its
/// layer's encoder is gone.
async fn recv_keyframe(
    rx: Option<&mut broadcast::Receiver<media::EncodedVideo>>,
) -> Option<media::EncodedVideo> {
    let Some(rx) = rx else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(v) if v.keyframe => return Some(v),
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}
