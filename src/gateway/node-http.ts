// What the gateway takes from node:http, without the built-in's ES module facade: an
// `import … from 'node:http'` reads every export, the lazy WebSocket getter included, which
// loads Node's bundled fetch and WebSocket (its own undici, nodejs/node#59686) that podgate
// never uses: 2 MiB of heap and 6-12 MiB of RSS in every gateway process
// (bench/results/memory.md). process.getBuiltinModule reads only what is asked for.
const http = process.getBuiltinModule('node:http')

export const { createServer, ServerResponse, STATUS_CODES } = http
