// One node of an Aedes MQTT cluster whose nodes share one Redis (messages through
// mqemitter-redis, retained messages, sessions and last wills through aedes-persistence-redis):
// the clustered broker of caterva's integration tests (tests/integration/clusters.py).
//
//   node aedes-node.mjs PORT REDIS_PORT NODE_ID HEARTBEAT_MS
//
// Prints `caterva-test aedes ready mqtt://127.0.0.1:PORT` once it accepts MQTT clients and a
// message it sent through Redis has come back to it; the test fixture waits for that line.
// HEARTBEAT_MS is how often the node tells its peers it is alive: a peer publishes the last
// wills of a node's clients 3 to 7 heartbeats after that node fell silent.

import { Aedes } from 'aedes'
import persistenceRedis from 'aedes-persistence-redis'
import { createServer } from 'aedes-server-factory'
import mqemitterRedis from 'mqemitter-redis'

const [port, redisPort, id, heartbeat] = process.argv.slice(2)
if (!heartbeat) {
  console.error('usage: node aedes-node.mjs PORT REDIS_PORT NODE_ID HEARTBEAT_MS')
  process.exit(2)
}
const redis = { host: '127.0.0.1', port: Number(redisPort) }

const mq = mqemitterRedis(redis)
mq.state.on('error', (err) => console.error(`redis (messages): ${err.message}`))
const aedes = await Aedes.createBroker({
  id,
  mq,
  persistence: persistenceRedis(redis),
  heartbeatInterval: Number(heartbeat)
})
aedes.on('clientError', (client, err) => console.error(`client ${client.id}: ${err.message}`))

// Redis relays our own messages back to us: one that came back proves the path to the peers
await new Promise((resolve) => {
  const topic = `$SYS/${id}/selftest`
  mq.on(topic, (packet, done) => { done(); resolve() }, () => mq.emit({ topic, payload: id }))
})

const server = createServer(aedes)
server.on('error', (err) => {
  console.error(`cannot listen on 127.0.0.1:${port}: ${err.message}`)
  process.exit(1)
})
server.listen(Number(port), '127.0.0.1', () => {
  console.log(`caterva-test aedes ready mqtt://127.0.0.1:${port}`)
})
