//! The SFU's negotiation (`liveloop_sfu::ortc`) against the real mediasoup-client and
//! mediasoup ORTC modules from npm (tests/js/sfu_ortc.mjs): mediasoup-client accepts our
//! router's capabilities and our consumer parameters and can receive them, and mediasoup
//! itself, given the same producer and device, maps the producer's numbering the same way and
//! makes the same consumer codecs, header extensions and RTX.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use liveloop_proto::sfu::{MediaKind, RtpCapabilities, RtpParameters};
use liveloop_sfu::ortc::{ConsumerSsrcs, consumer_parameters, map_producer, router_capabilities};
use serde_json::{Value, json};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js/sfu_ortc.mjs")
}

fn node(args: &[&Path], cmd: &str) -> Result<Value> {
    let out = Command::new("node")
        .arg(script())
        .arg(cmd)
        .args(args)
        .output()
        .context("node (the test command installs it)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "node failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .with_context(|| format!("the report line of: {stdout}"))
}

fn write(dir: &Path, name: &str, v: &Value) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(v)?)?;
    Ok(path)
}

/// What mediasoup-client sends for `produce` from Chromium: its own payload types and
/// header extension ids (STACK.md), simulcast by rid for video.
fn chromium_producers() -> Vec<(MediaKind, Value)> {
    vec![
        (
            MediaKind::Video,
            json!({
                "mid": "1",
                "codecs": [
                    {"mimeType": "video/H264", "payloadType": 108, "clockRate": 90000,
                     "parameters": {"level-asymmetry-allowed": 1, "packetization-mode": 1,
                                    "profile-level-id": "42e01f"},
                     "rtcpFeedback": [{"type": "goog-remb", "parameter": ""},
                                      {"type": "transport-cc", "parameter": ""},
                                      {"type": "ccm", "parameter": "fir"},
                                      {"type": "nack", "parameter": ""},
                                      {"type": "nack", "parameter": "pli"}]},
                    {"mimeType": "video/rtx", "payloadType": 109, "clockRate": 90000,
                     "parameters": {"apt": 108}, "rtcpFeedback": []}
                ],
                "headerExtensions": [
                    {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false, "parameters": {}},
                    {"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": 10, "encrypt": false, "parameters": {}},
                    {"uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": 11, "encrypt": false, "parameters": {}},
                    {"uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": false, "parameters": {}},
                    {"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false, "parameters": {}},
                    {"uri": "urn:3gpp:video-orientation", "id": 13, "encrypt": false, "parameters": {}}
                ],
                "encodings": [
                    {"rid": "r0", "scalabilityMode": "L1T1", "scaleResolutionDownBy": 4, "maxBitrate": 150000},
                    {"rid": "r1", "scalabilityMode": "L1T1", "maxBitrate": 900000}
                ],
                "rtcp": {"cname": "Bq4Jm0F2", "reducedSize": true}
            }),
        ),
        (
            MediaKind::Audio,
            json!({
                "mid": "0",
                "codecs": [
                    {"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2,
                     "parameters": {"minptime": 10, "useinbandfec": 1},
                     "rtcpFeedback": [{"type": "transport-cc", "parameter": ""}]}
                ],
                "headerExtensions": [
                    {"uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1, "encrypt": false, "parameters": {}},
                    {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false, "parameters": {}}
                ],
                "encodings": [{"ssrc": 2_718_281, "dtx": false}],
                "rtcp": {"cname": "Bq4Jm0F2", "reducedSize": true}
            }),
        ),
    ]
}

#[test]
fn mediasoup_client_and_mediasoup_agree_with_our_negotiation() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("liveloop-sfu-ortc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let router = router_capabilities();
    let router_file = write(&dir, "router.json", &serde_json::to_value(&router)?)?;
    // The device's receive capabilities, as mediasoup-client derives them from ours (it
    // throws, and the script fails, if it finds our capabilities invalid).
    let recv: RtpCapabilities =
        serde_json::from_value(node(&[&router_file], "recv-caps")?).context("our types read it")?;
    assert!(
        recv.codecs.iter().any(|c| c.mime_type == "video/H264"),
        "{recv:?}"
    );
    for (kind, params) in chromium_producers() {
        let rtp: RtpParameters = serde_json::from_value(params.clone())?;
        let mapping = map_producer(&router, kind, &rtp)?;
        let ssrcs = ConsumerSsrcs {
            media: 1_111_111,
            rtx: 2_222_222,
        };
        let ours = consumer_parameters(&router, &mapping, &recv, ssrcs)?;
        let producer_file = write(
            &dir,
            "producer.json",
            &json!({"kind": kind, "rtpParameters": params}),
        )?;
        let ours_file = write(&dir, "consumer.json", &json!({"rtpParameters": ours}))?;
        let report = node(&[&router_file, &producer_file, &ours_file], "check")?;
        eprintln!("{kind:?}: {report}");
        assert_eq!(report["clientValid"], true, "{report}");
        assert_eq!(report["canReceive"], true, "{report}");
        assert_eq!(report["canConsume"], true, "{report}");
        let our_mapping: Vec<Value> = mapping
            .payload_types
            .iter()
            .map(|(a, b)| json!([a, b]))
            .collect();
        assert_eq!(report["mapping"], Value::from(our_mapping), "{report}");
        assert_eq!(
            report["ours"]["codecs"], report["mediasoup"]["codecs"],
            "{report}"
        );
        assert_eq!(
            report["ours"]["headerExtensions"], report["mediasoup"]["headerExtensions"],
            "{report}"
        );
        assert_eq!(
            report["ours"]["rtx"], report["mediasoup"]["rtx"],
            "{report}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
