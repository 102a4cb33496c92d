// Matchmaking throughput: N socket.io clients connect, then all send request-room at once;
// prints one JSON line {clients, matched, seconds, pairsPerSecond}.
// Usage: node match_bench.mjs http://127.0.0.1:PORT N
import { io } from "socket.io-client";

const [url, nArg] = process.argv.slice(2);
const n = Number(nArg ?? 2000) & ~1;
const sockets = [];
for (let i = 0; i < n; i += 100) {
  const batch = [];
  for (let j = i; j < Math.min(n, i + 100); j++) {
    const s = io(url, { transports: ["websocket"], reconnection: false, forceNew: true });
    sockets.push(s);
    batch.push(new Promise((resolve, reject) => { s.once("connect", resolve); s.once("connect_error", reject); }));
  }
  await Promise.all(batch);
}
let matched = 0;
const start = process.hrtime.bigint();
const done = new Promise((resolve) => {
  for (const s of sockets) {
    s.once("match-done", () => { matched += 1; if (matched === n) resolve(); });
  }
  setTimeout(resolve, 60_000);
});
sockets.forEach((s, i) => s.emit("request-room", { name: `u${i}`, roomId: null, userImage: "" }));
await done;
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
console.log(JSON.stringify({ clients: n, matched, seconds, pairsPerSecond: matched / 2 / seconds }));
sockets.forEach((s) => s.close());
process.exit(0);
