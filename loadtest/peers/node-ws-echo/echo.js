// WebSocket echo on Node's `ws` (Debian node-ws), one process per "thread"
// with the cluster module sharing the port.
//
//   node echo.js PORT [WORKERS]
'use strict';
const cluster = require('cluster');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 7001);
const workers = Number(process.argv[3] || 2);

if (cluster.isPrimary) {
  let listening = 0;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('listening', () => {
    if (++listening === workers) {
      console.log(`node-ws: websocket-echo listening on 127.0.0.1:${port}`);
      console.log(`node-ws: ready: ${workers} workers`);
    }
  });
  const stop = () => {
    for (const id in cluster.workers) cluster.workers[id].kill();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', () => {});
  });
}
