//! What a participant's peer reports (descriptions, connection states, media, keyframe
//! requests) and what it says on the data channel (`proto::peer`).

#[allow(clippy::wildcard_imports)]
use super::*;

impl Runner {
    pub(super) async fn on_peer(&mut self, from: &str, ev: PeerEvent) {
        match ev {
            PeerEvent::LocalDescription(d) => {
                let _ = self.session.send(from, Outgoing::Description(d)).await;
            }
            PeerEvent::LocalCandidate(c) => {
                let _ = self.session.send(from, Outgoing::Candidate(c)).await;
            }
            PeerEvent::Connection(ConnectionState::Connected) => {
                self.membership.connected(from);
                // A new receiver needs a keyframe to start decoding the shared streams.
                if let Some(m) = self.members.get(from)
                    && let Some(codec) = m.sending_as
                {
                    self.flags.request_keyframe_now(*m.layer.borrow(), codec);
                    if let Some(screen) = &self.screen {
                        screen.keyframe.request_now(codec);
                    }
                }
                self.emit(EngineEvent::PeerConnected {
                    id: from.to_owned(),
                })
                .await;
                self.update_state().await;
            }
            PeerEvent::Connection(ConnectionState::Disconnected) => {
                // Often a short outage: ICE comes back by itself. An absent participant whose
                // connection stays interrupted is let go by `expire_absent`.
                self.membership.disconnected(from, self.epoch.elapsed());
            }
            PeerEvent::Connection(ConnectionState::Failed | ConnectionState::Closed)
                if self.membership.closed_is_gone(from) =>
            {
                // Gone from the room and now from the network too: the call is over.
                self.remove_member(from).await;
                self.emit(EngineEvent::PeerLeft {
                    id: from.to_owned(),
                })
                .await;
                self.update_state().await;
            }
            PeerEvent::Connection(ConnectionState::Failed) => self.on_failed(from).await,
            PeerEvent::ChatOpen => {
                if let Some(m) = self.members.get(from) {
                    let _ = m.peer.send_chat(&self.state_message()).await;
                }
            }
            PeerEvent::Chat(text) => self.on_data(from, &text).await,
            PeerEvent::Video {
                codec,
                access_unit,
                rtp_timestamp,
            } => {
                if let Some(m) = self.members.get(from) {
                    media::queue_frame(
                        &m.decoder,
                        &m.keyframe_needed,
                        (codec, rtp_timestamp, access_unit),
                    );
                }
            }
            PeerEvent::SendVideoAs(codec) => self.send_video_as(from, codec),
            PeerEvent::Screen {
                codec,
                access_unit,
                rtp_timestamp,
            } => {
                let events = self.events.clone();
                if let Some(m) = self.members.get_mut(from).filter(|m| m.screen_on) {
                    let decoder = m.screen_decoder.get_or_insert_with(|| {
                        media::start_decoder(
                            screen_stream_id(from),
                            events,
                            Arc::new(DecodeCounters::default()),
                            m.screen_keyframe_needed.clone(),
                            Arc::new(SyncState::default()),
                        )
                    });
                    media::queue_frame(
                        decoder,
                        &m.screen_keyframe_needed,
                        (codec, rtp_timestamp, access_unit),
                    );
                }
            }
            PeerEvent::ScreenKeyframeRequested => {
                if let (Some(screen), Some(codec)) = (
                    &self.screen,
                    self.members.get(from).and_then(|m| m.sending_as),
                ) {
                    screen.keyframe.request(codec);
                }
            }
            PeerEvent::SenderReport {
                video,
                ntp_time,
                rtp_timestamp,
            } => {
                if let Some(m) = self.members.get(from) {
                    let (slot, rate) = if video {
                        (&m.sync.video_map, 90_000)
                    } else {
                        (&m.sync.audio_map, 48_000)
                    };
                    *lock(slot) = Some(ClockMap::from_sender_report(ntp_time, rtp_timestamp, rate));
                }
            }
            PeerEvent::Audio {
                packet,
                rtp_timestamp,
                ..
            } => {
                let now = self.epoch.elapsed();
                if let Some(m) = self.members.get(from) {
                    lock(&m.slot.playback).push(rtp_timestamp, now, packet);
                }
            }
            PeerEvent::VideoLoss { .. } => {
                if let Some(m) = self.members.get(from) {
                    m.video_losses.fetch_add(1, Ordering::Relaxed);
                }
            }
            PeerEvent::KeyframeRequested => {
                // For the layer this participant gets (a slow member's requests do not cost
                // the others a large keyframe).
                if let Some(m) = self.members.get(from)
                    && let Some(codec) = m.sending_as
                {
                    self.flags.request_keyframe(*m.layer.borrow(), codec);
                }
            }
            PeerEvent::NoVideoCodec => {
                self.error(
                    ErrorKind::NoVideoCodec,
                    format!(
                        "{from} cannot send or receive H.264 or VP8 video (their browser offers \
                         other codecs only); the call goes on with audio and chat"
                    ),
                )
                .await;
            }
            _ => {}
        }
    }

    pub(super) async fn on_data(&mut self, from: &str, text: &str) {
        // Malformed or unknown messages are ignored (liveloop_proto::peer).
        let Some(msg) = PeerMessage::parse(text) else {
            return;
        };
        match msg {
            PeerMessage::Chat { text } => {
                self.emit(EngineEvent::Chat {
                    from: from.to_owned(),
                    text,
                })
                .await;
            }
            PeerMessage::Bye if self.members.contains_key(from) => {
                self.remove_member(from).await;
                self.emit(EngineEvent::PeerLeft {
                    id: from.to_owned(),
                })
                .await;
                self.update_state().await;
            }
            PeerMessage::State(state) => {
                let event = EngineEvent::PeerState {
                    id: from.to_owned(),
                    name: state.name,
                    muted: state.muted,
                    camera_off: state.camera_off,
                    screen: state.screen,
                };
                if let Some(m) = self.members.get_mut(from) {
                    m.screen_on = state.screen;
                    if !m.screen_on {
                        // The share ended: its decoder thread ends with it.
                        m.screen_decoder = None;
                    } else if m.screen_decoder.is_none() {
                        // Frames that came before this message were dropped: start clean.
                        m.screen_keyframe_needed.store(true, Ordering::Relaxed);
                    }
                }
                self.emit(event).await;
            }
            PeerMessage::Bye => {}
        }
    }
}
