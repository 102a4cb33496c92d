//! Building a peer connection: the codecs we register, the interceptors (NACK, RTCP
//! reports, TWCC feedback, our keyframe-request tap), ICE and mDNS settings, and our audio
//! track.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder, RTCIceServer,
    Registry, SettingEngineBuilder,
};

use crate::handler::Handler;
use crate::{PeerOptions, RtcError, Shared, VideoCodec, keyframe, rtc_err};

/// How long a relay pair waits for a better one before it is nominated.
pub(crate) fn relay_wait(relay_only: bool) -> Duration {
    if relay_only {
        Duration::ZERO
    } else {
        Duration::from_millis(500)
    }
}

pub(crate) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// webrtc-rs's default interceptors (NACK, RTCP reports, TWCC feedback), with the NACK
/// generator running every 20 ms rather than 100, at most four times per packet: the receiver holds a hole only briefly
/// (`reorder::MAX_WAIT`), so the retransmission has to be asked for at once.
fn default_interceptors(
    media: &mut MediaEngine,
    estimate: crate::keyframe::SendEstimate,
) -> Result<Registry, RtcError> {
    use rtc::peer_connection::configuration::interceptor_registry as defaults;
    for parameter in ["", "pli"] {
        media.register_feedback(
            rtc::rtp_transceiver::rtp_sender::RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    let registry = Registry::new()
        .with(
            rtc::interceptor::Slot::NackResponder,
            rtc::interceptor::NackResponderBuilder::new().build(),
        )
        .with(
            rtc::interceptor::Slot::NackGenerator,
            rtc::interceptor::NackGeneratorBuilder::new()
                .with_interval(Duration::from_millis(20))
                // Each missing packet is asked for a few times, not forever: after an outage
                // hundreds are missing, and unlimited NACKs every 20 ms turned into a
                // retransmission storm (150 Mbit/s) that drowned the keyframe request.
                .with_max_nacks_per_packet(4)
                // Holes are asked for only as far back as the reorder buffer waits for them
                // (`reorder::MAX_GAP`, 128 packets): with webrtc-rs's 512, a 3 s outage ended
                // in a second of retransmissions of packets already given up (5 Mbit/s on a
                // 1.6 Mbit/s call), ahead of the new frames (recovery 820 ms, not 60).
                .with_size(128)
                .build(),
        );
    defaults::configure_simulcast_extension_headers(media).map_err(rtc_err)?;
    // TWCC both ways: our receiver reports what arrives (for the remote's estimator), and our
    // own send side numbers what leaves, estimates from the feedback (`core::bwe`: queueing
    // delay and loss), and paces to the estimate, audio first (`pacer.rs`). The TWCC pieces
    // are webrtc-rs's (`configure_congestion_control` assembles them with its own estimator
    // and a first-in, first-out pacer).
    let registry = defaults::configure_twcc_receiver_only(registry, media).map_err(rtc_err)?;
    let registry = registry
        .with(
            rtc::interceptor::Slot::TwccSender,
            rtc::interceptor::TwccSenderBuilder::new().build(),
        )
        .with(
            rtc::interceptor::Slot::CongestionControl,
            rtc::interceptor::CongestionControlBuilder::new(crate::bwe::QueueDelayEstimator::new(
                START_BITRATE_BPS,
                MIN_BITRATE_BPS,
                MAX_BITRATE_BPS,
                estimate,
            ))
            .build(),
        )
        .with(
            rtc::interceptor::Slot::Pacer,
            crate::pacer::AudioFirstPacer::new(
                f64::from(START_BITRATE_BPS) * crate::bwe::PACING_FACTOR,
            ),
        );
    Ok(defaults::configure_rtcp_reports(registry))
}

/// Where the send estimate starts, before any feedback: a guess that fits most links (it
/// grows by a quarter a second while the path queues nothing, and is cut at the first
/// queue).
pub const START_BITRATE_BPS: u32 = 600_000;
/// The estimate's floor: audio and a little video.
pub const MIN_BITRATE_BPS: u32 = 100_000;
/// Its ceiling: more than a 720p call needs.
pub const MAX_BITRATE_BPS: u32 = 6_000_000;

/// Our audio track (Opus; webrtc-rs packetizes it).
pub(crate) fn audio_track() -> Result<Arc<TrackLocalStaticSample>, RtcError> {
    let encoding = RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters {
            ssrc: Some(rand::random::<u32>()),
            ..Default::default()
        },
        codec: opus_codec(),
        ..Default::default()
    };
    let track = MediaStreamTrack::new(
        "liveloop".to_owned(),
        "audio".to_owned(),
        "audio".to_owned(),
        RtpCodecKind::Audio,
        vec![encoding],
    );
    Ok(Arc::new(
        TrackLocalStaticSample::new(Instant::now(), track).map_err(rtc_err)?,
    ))
}

/// The codecs, interceptors and settings of every peer, with `mdns` as the mDNS mode.
pub(crate) async fn build_connection(
    options: &PeerOptions,
    shared: &Arc<Shared>,
    mdns: MulticastDnsMode,
) -> Result<impl PeerConnection + use<>, RtcError> {
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        )
        .map_err(rtc_err)?;
    for codec in VideoCodec::PREFERENCE {
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: codec.rtp_codec(),
                    payload_type: codec.payload_type(),
                },
                RtpCodecKind::Video,
            )
            .map_err(rtc_err)?;
    }
    let registry = default_interceptors(&mut media, shared.send_estimate.clone())?.with(
        rtc::interceptor::Slot::from(14_000),
        keyframe::KeyframeRequests::default(),
    );
    let settings = SettingEngineBuilder::new()
        .with_ice_connection_attempts(Some(Duration::from_millis(20)), None)
        // A relay pair waits this long for a direct one to succeed before it is nominated
        // (webrtc-rs: 2 s, which every relayed call paid in full). Relay-only has nothing
        // better to wait for; otherwise as long as a server-reflexive pair waits (0.5 s), so
        // a direct path that works over the internet still wins.
        .with_relay_acceptance_min_wait(Some(relay_wait(options.relay_only)))
        // A peer-reflexive pair (the other side's checks arrived before its trickled
        // candidates: after an ICE restart, nearly always) waited 1 s, the whole of a
        // restart's delay. Such a pair is a direct path, ranked above server-reflexive ones
        // (RFC 8445 5.1.2): no wait, as for host pairs.
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
        .with_multicast_dns_mode(mdns)
        // An ICE restart binds the sockets afresh, on the interfaces there are then: after a
        // network change (`engine::netwatch`) the old addresses may be gone, and candidates
        // gathered on them would lead nowhere.
        .with_discard_local_candidates_during_ice_restart(true)
        .build();
    let ice_servers = options
        .ice_servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone(),
            credential: s.credential.clone(),
        })
        .collect();
    let policy = if options.relay_only {
        rtc::peer_connection::configuration::RTCIceTransportPolicy::Relay
    } else {
        rtc::peer_connection::configuration::RTCIceTransportPolicy::All
    };
    let config = RTCConfigurationBuilder::new()
        // Made ahead of time (`certs.rs`); none ready: webrtc-rs makes one now.
        .with_certificates(crate::certs::take().into_iter().collect())
        .with_ice_servers(ice_servers)
        .with_ice_transport_policy(policy)
        .build();
    let udp = if options.udp_addrs.is_empty() {
        vec!["0.0.0.0:0".to_owned()]
    } else {
        options.udp_addrs.clone()
    };
    // The builder's future is large (20 kB); box it rather than grow every caller's.
    Box::pin(
        PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(media)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler(shared.clone())))
            .with_runtime(Arc::new(crate::runtime::PumpedRuntime::new(
                shared.relay_pump.clone(),
            )))
            .with_udp_addrs(udp)
            .with_data_channel_send_buffer_limit(crate::DATA_CHANNEL_SEND_LIMIT)
            .build(),
    )
    .await
    .map_err(rtc_err)
}
