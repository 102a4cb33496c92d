// The real mediasoup-client and mediasoup ORTC modules (npm, installed with --ignore-scripts:
// mediasoup's worker is not built, its pure-JS `ortc` runs) as oracles for our SFU's
// negotiation (tests/sfu_ortc.rs).
//
//   node sfu_ortc.mjs recv-caps <router.json>
//       mediasoup-client validates the router's capabilities (as Device.load does) and
//       prints the receive capabilities a Chromium device derives from them.
//   node sfu_ortc.mjs check <router.json> <producer.json> <consumer.json>
//       mediasoup-client validates our consumer parameters and says whether the device can
//       receive them; mediasoup maps the same producer and makes its own consumer
//       parameters for the same device, printed beside ours.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
// Neither package exports these files; they are loaded by path.
const client = require(path.join(here, "node_modules/mediasoup-client/lib/ortc.js"));
const server = require(path.join(here, "node_modules/mediasoup/node/lib/ortc.js"));

const read = (f) => JSON.parse(readFileSync(f, "utf8"));

// What Chromium's WebRTC stack reports it can do (mediasoup-client reads this from a
// local SDP offer): its own payload types and header extension ids.
const fb = (type, parameter = "") => ({ type, parameter });
const videoFb = [fb("goog-remb"), fb("transport-cc"), fb("ccm", "fir"), fb("nack"), fb("nack", "pli")];
const chromium = {
  codecs: [
    { kind: "audio", mimeType: "audio/opus", preferredPayloadType: 111, clockRate: 48000, channels: 2,
      parameters: { minptime: 10, useinbandfec: 1 }, rtcpFeedback: [fb("transport-cc")] },
    { kind: "video", mimeType: "video/VP8", preferredPayloadType: 96, clockRate: 90000, parameters: {}, rtcpFeedback: videoFb },
    { kind: "video", mimeType: "video/rtx", preferredPayloadType: 97, clockRate: 90000, parameters: { apt: 96 }, rtcpFeedback: [] },
    { kind: "video", mimeType: "video/H264", preferredPayloadType: 108, clockRate: 90000,
      parameters: { "level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "42e01f" }, rtcpFeedback: videoFb },
    { kind: "video", mimeType: "video/rtx", preferredPayloadType: 109, clockRate: 90000, parameters: { apt: 108 }, rtcpFeedback: [] },
  ],
  headerExtensions: [
    { kind: "audio", uri: "urn:ietf:params:rtp-hdrext:ssrc-audio-level", preferredId: 1 },
    { kind: "audio", uri: "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", preferredId: 2 },
    { kind: "video", uri: "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", preferredId: 2 },
    { kind: "audio", uri: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", preferredId: 3 },
    { kind: "video", uri: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", preferredId: 3 },
    { kind: "audio", uri: "urn:ietf:params:rtp-hdrext:sdes:mid", preferredId: 4 },
    { kind: "video", uri: "urn:ietf:params:rtp-hdrext:sdes:mid", preferredId: 4 },
    { kind: "video", uri: "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", preferredId: 10 },
    { kind: "video", uri: "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", preferredId: 11 },
    { kind: "video", uri: "urn:3gpp:video-orientation", preferredId: 13 },
  ],
};

function deviceCaps(router) {
  client.validateAndNormalizeRtpCapabilities(router);
  const extended = client.getExtendedRtpCapabilities(structuredClone(chromium), router, false);
  return client.getRecvRtpCapabilities(extended);
}

const [cmd, ...files] = process.argv.slice(2);
if (cmd === "recv-caps") {
  const router = read(files[0]);
  console.log(JSON.stringify(deviceCaps(router)));
} else if (cmd === "check") {
  const [router, producer, ours] = files.map(read);
  const recv = deviceCaps(structuredClone(router));
  const report = { ok: true };
  try {
    client.validateAndNormalizeRtpParameters(structuredClone(ours.rtpParameters));
    report.clientValid = true;
  } catch (e) {
    report.clientValid = String(e);
  }
  report.canReceive = client.canReceive(structuredClone(ours.rtpParameters), recv);
  // mediasoup's own answer for the same producer and device.
  const params = structuredClone(producer.rtpParameters);
  server.validateRtpParameters(params);
  const mapping = server.getProducerRtpParametersMapping(params, router);
  const consumable = server.getConsumableRtpParameters(producer.kind, params, router, mapping);
  report.canConsume = server.canConsume(consumable, recv);
  const theirs = server.getConsumerRtpParameters({
    consumableRtpParameters: consumable,
    remoteRtpCapabilities: recv,
    pipe: false,
    enableRtx: true,
  });
  report.mapping = mapping.codecs.map((c) => [c.payloadType, c.mappedPayloadType]);
  report.mediasoup = {
    codecs: theirs.codecs.map((c) => [c.mimeType, c.payloadType]),
    headerExtensions: theirs.headerExtensions.map((h) => [h.uri, h.id]).sort(),
    rtx: Boolean(theirs.encodings[0]?.rtx),
  };
  report.ours = {
    codecs: ours.rtpParameters.codecs.map((c) => [c.mimeType, c.payloadType]),
    headerExtensions: ours.rtpParameters.headerExtensions.map((h) => [h.uri, h.id]).sort(),
    rtx: Boolean(ours.rtpParameters.encodings[0]?.rtx),
  };
  console.log(JSON.stringify(report));
} else {
  console.error("usage: sfu_ortc.mjs recv-caps <router.json> | check <router.json> <producer.json> <consumer.json>");
  process.exit(2);
}
