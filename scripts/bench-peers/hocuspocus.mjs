// Starts a plain @hocuspocus/server (no extensions: documents in memory) on
// HOST:PORT for scripts/bench.
import { Server } from "@hocuspocus/server";

const server = new Server({
  address: process.env.HOST || "127.0.0.1",
  port: Number(process.env.PORT || 1234),
  quiet: true,
});
await server.listen();
console.log(`hocuspocus listening on ${process.env.HOST || "127.0.0.1"}:${process.env.PORT || 1234}`);
