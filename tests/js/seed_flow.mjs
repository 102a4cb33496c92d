// Seed 000's example flow, run by the official socket.io-client against a LiveLoop matchmaking
// server: connect two clients, request-room with the seed's own payload, match-done, offer,
// answer, ICE, chat, stop-call. Usage: node seed_flow.mjs http://127.0.0.1:PORT
// Prints one JSON line {ok, steps} and exits 0 on success, 1 on failure or after 10 s.
import { io } from "socket.io-client";

const url = process.argv[2];
const steps = [];
const fail = (why) => {
  console.log(JSON.stringify({ ok: false, steps, error: String(why) }));
  process.exit(1);
};
setTimeout(() => fail("timed out"), 10_000);

const once = (socket, event) => new Promise((resolve) => socket.once(event, resolve));
const connect = async () => {
  const socket = io(url, { transports: ["websocket"], reconnection: false });
  socket.on("error", (e) => fail(`server error: ${JSON.stringify(e)}`));
  await once(socket, "connect");
  return socket;
};

try {
  const a = await connect();
  const b = await connect();

  // The seed's example, verbatim payload.
  a.emit("request-room", { name: "Test User", roomId: null, userImage: "data:image/png;base64,..." });
  await new Promise((r) => setTimeout(r, 100));
  const doneA = once(a, "match-done");
  const doneB = once(b, "match-done");
  b.emit("request-room", { name: "Other User", roomId: null, userImage: "" });
  const [ma, mb] = await Promise.all([doneA, doneB]);
  if (ma.roomId !== mb.roomId) fail("different rooms");
  if (ma.remoteUserDetails.socket !== b.id || mb.remoteUserDetails.socket !== a.id) fail("wrong peers");
  if (mb.remoteUserDetails.userImage !== "data:image/png;base64,...") fail("image not passed on");
  steps.push("match-done");

  // A client that ignores makeOffer: the side that got match-done first offers; B learns of
  // the call from the offer, as in the public original.
  const roomId = ma.roomId;
  const offer = { type: "offer", sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n" };
  const gotOffer = once(b, "negotiation-call-offer");
  a.emit("negotiation-call-offer", { offer, roomId, name: "Test User", remoteSocketId: b.id });
  const o = await gotOffer;
  if (o.offer.sdp !== offer.sdp || o.remoteUserDetails.socket !== a.id || o.roomId !== roomId) fail("offer mangled");
  steps.push("offer");

  const ans = { type: "answer", sdp: "v=0\r\n" };
  const gotAnswer = once(a, "negotiation-call-answer");
  b.emit("negotiation-call-answer", { ans, roomId, name: "Other User", remoteSocketId: o.remoteUserDetails.socket });
  const an = await gotAnswer;
  if (an.ans.sdp !== ans.sdp || an.remoteSocketId !== b.id) fail("answer mangled");
  steps.push("answer");

  const candidate = { candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", sdpMid: "0", sdpMLineIndex: 0 };
  const gotIce = once(b, "new-ice-candidates");
  a.emit("send-new-ice-candidates", { to: b.id, candidate });
  const ice = await gotIce;
  if (ice.candidate.candidate !== candidate.candidate) fail("candidate mangled");
  steps.push("ice");

  const chatA = once(a, "Message:recived");
  const chatB = once(b, "Message:recived");
  a.emit("newMessage", { message: "hello from JS", roomId, remoteSocket: b.id });
  const [ca, cb] = await Promise.all([chatA, chatB]);
  if (ca.message !== "hello from JS" || cb.from !== a.id) fail("chat mangled");
  steps.push("chat");

  const stopped = once(b, "stop-by-remote-user");
  a.emit("stop-call", { roomId, remoteSocketId: b.id, name: "Test User" });
  await stopped;
  steps.push("stop");

  a.close();
  b.close();
  console.log(JSON.stringify({ ok: true, steps }));
  process.exit(0);
} catch (e) {
  fail(e);
}
