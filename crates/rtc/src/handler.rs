//! webrtc-rs's callbacks for one connection, and the driver of each received track: RTP
//! goes through the receive pipeline (`receive`), RTCP keyframe requests and sender
//! reports become events.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceConnectionState, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState,
};

use crate::{
    ConnectionState, MAX_HELD_CANDIDATES, PeerEvent, SCREEN_TRACK, Shared, VideoCodec, lock,
    receive,
};

pub(crate) struct Handler(pub(crate) Arc<Shared>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, e: RTCPeerConnectionIceEvent) {
        // A relay candidate's related address is our own (the address the TURN server saw):
        // it is only informational (RFC 8445 §5.1.3), and private mode is about not
        // showing it, so it goes out as 0.0.0.0:0, as Chromium sends it.
        if let Ok(init) = e.candidate.to_json().map(|mut init| {
            if let Some(hidden) = hide_related_address(&init.candidate) {
                init.candidate = hidden;
            }
            init
        }) && let Ok(json) = serde_json::to_value(&init)
        {
            let mut held = lock(&self.0.held_candidates);
            match held.as_mut() {
                // Our description is not out yet: the candidate waits for it (a peer that
                // gets a candidate before the description it belongs to may drop it).
                Some(h) if h.len() < MAX_HELD_CANDIDATES => h.push(json),
                Some(_) => tracing::warn!("too many local candidates held; one was dropped"),
                None => {
                    drop(held);
                    self.0.emit(PeerEvent::LocalCandidate(json));
                }
            }
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        match state {
            // Checks (the first ones, or a restart's, ours or the other side's): setup.
            RTCIceConnectionState::Checking if !self.0.closed.load(Ordering::Relaxed) => {
                self.0.relay_pump.set(true);
            }
            // After a restart, with DTLS long done, a pair is the end of the setup.
            RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
                if self.0.dtls_done.load(Ordering::Relaxed) =>
            {
                self.0.end_setup();
            }
            _ => {}
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::info!(?state, "peer connection state");
        if state == RTCPeerConnectionState::Connected {
            self.0.dtls_done.store(true, Ordering::Relaxed);
            self.0.end_setup();
        }
        let state = match state {
            RTCPeerConnectionState::Connected => ConnectionState::Connected,
            RTCPeerConnectionState::Disconnected => ConnectionState::Disconnected,
            RTCPeerConnectionState::Failed => ConnectionState::Failed,
            RTCPeerConnectionState::Closed => ConnectionState::Closed,
            _ => ConnectionState::Connecting,
        };
        self.0.emit(PeerEvent::Connection(state));
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        self.0.watch_chat(dc);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = self.0.clone();
        let kind = track.kind().await;
        let ssrc = track.ssrcs().await.first().copied().unwrap_or_default();
        let screen = kind == RtpCodecKind::Video && track.track_id().await == SCREEN_TRACK;
        // One codec per received track, the one the remote sends it with (a codec we do not
        // have, which negotiation prevents, is dropped).
        let codec = match track.codec(ssrc).await {
            Some(c) => VideoCodec::from_mime(&c.mime_type),
            None => None,
        };
        if kind == RtpCodecKind::Video {
            let slot = if screen {
                &shared.remote_screen
            } else {
                &shared.remote_video
            };
            *lock(slot) = Some((track.clone(), ssrc));
        }
        tokio::spawn(async move {
            let mut receiver = receive::VideoReceiver::new(codec);
            loop {
                // While a hole waits for its retransmission, wake when it is to be given up.
                let ev = match receiver.deadline() {
                    Some(at) => tokio::select! {
                        ev = track.poll() => ev,
                        () = tokio::time::sleep_until(at.into()) => {
                            let out = receiver.poll(Instant::now());
                            received(&shared, &*track, ssrc, screen, out).await;
                            continue;
                        }
                    },
                    None => track.poll().await,
                };
                let Some(ev) = ev else { break };
                let pkt = match ev {
                    TrackRemoteEvent::OnRtpPacket(pkt) => pkt,
                    TrackRemoteEvent::OnRtcpPacket(packets) => {
                        // webrtc-rs routes RTCP by track id, the remote's first: a keyframe
                        // request about *our* "video" or "screen" track lands here when the
                        // remote's track has the same id (two LiveLoop clients). A received
                        // track is never asked for keyframes, so it is ours.
                        if packets.iter().any(|p| {
                            let any = p.as_any();
                            any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                        }) {
                            shared.emit(if screen {
                                PeerEvent::ScreenKeyframeRequested
                            } else {
                                PeerEvent::KeyframeRequested
                            });
                        }
                        // The screen's clock is not the camera's and lip sync has no use for it.
                        if screen {
                            continue;
                        }
                        for sr in packets
                            .iter()
                            .filter_map(|p| p.as_any().downcast_ref::<SenderReport>())
                        {
                            shared.emit(PeerEvent::SenderReport {
                                video: kind == RtpCodecKind::Video,
                                ntp_time: sr.ntp_time,
                                rtp_timestamp: sr.rtp_time,
                            });
                        }
                        continue;
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => continue,
                };
                match kind {
                    RtpCodecKind::Video => {
                        let out = receiver.push(pkt, Instant::now());
                        received(&shared, &*track, ssrc, screen, out).await;
                    }
                    RtpCodecKind::Audio => shared.emit(PeerEvent::Audio {
                        packet: pkt.payload.clone(),
                        sequence: pkt.header.sequence_number,
                        rtp_timestamp: pkt.header.timestamp,
                    }),
                    _ => {}
                }
            }
        });
    }
}

/// What a video track's pipeline gave: frames and losses become events, keyframe requests
/// PLIs to the track's sender.
async fn received(
    shared: &Shared,
    track: &dyn TrackRemote,
    ssrc: u32,
    screen: bool,
    out: Vec<receive::Received>,
) {
    for item in out {
        match item {
            receive::Received::Frame {
                codec,
                data,
                rtp_timestamp,
            } => shared.emit(if screen {
                PeerEvent::Screen {
                    codec,
                    access_unit: data,
                    rtp_timestamp,
                }
            } else {
                PeerEvent::Video {
                    codec,
                    access_unit: data,
                    rtp_timestamp,
                }
            }),
            receive::Received::Lost(lost_packets) => {
                shared.emit(PeerEvent::VideoLoss { lost_packets });
            }
            receive::Received::RequestKeyframe => {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                };
                match track.write_rtcp(vec![Box::new(pli)]).await {
                    Ok(()) => tracing::debug!(ssrc, "keyframe requested after loss"),
                    Err(e) => tracing::debug!("keyframe request after loss not sent: {e}"),
                }
            }
        }
    }
}

/// A relay candidate line with its related address replaced by `0.0.0.0 0`; `None` when
/// nothing is to hide (not relay, or no related address).
pub(crate) fn hide_related_address(candidate: &str) -> Option<String> {
    let tokens: Vec<&str> = candidate.split(' ').collect();
    let relay = tokens.windows(2).any(|w| w == ["typ", "relay"]);
    if !relay || !tokens.contains(&"raddr") {
        return None;
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut replace = None;
    for t in tokens {
        match replace.take() {
            Some(with) => out.push(with),
            None => {
                replace = match t {
                    "raddr" => Some("0.0.0.0"),
                    "rport" => Some("0"),
                    _ => None,
                };
                out.push(t);
            }
        }
    }
    Some(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::hide_related_address;

    #[test]
    fn relay_candidates_go_out_without_our_address() {
        assert_eq!(
            hide_related_address(
                "candidate:1 1 udp 16777215 203.0.113.9 50000 typ relay raddr 192.168.1.20 rport 41000"
            )
            .as_deref(),
            Some("candidate:1 1 udp 16777215 203.0.113.9 50000 typ relay raddr 0.0.0.0 rport 0")
        );
        assert_eq!(
            hide_related_address("candidate:2 1 udp 2130706431 192.168.1.20 41000 typ host"),
            None
        );
        assert_eq!(
            hide_related_address(
                "candidate:3 1 udp 1694498815 198.51.100.4 41000 typ srflx raddr 192.168.1.20 rport 41000"
            ),
            None,
            "a server-reflexive candidate is not private anyway"
        );
    }
}
