#!/usr/bin/env bun
// Counting TCP proxies for bench/mirror.ts, run as their own process (their work never shares a thread with what is
// measured): `bun bench/wire-proxy.ts src=127.0.0.1:5001 dst=127.0.0.1:5002` listens once per NAME=TARGET, forwards
// every connection as it is (the Host header goes through unchanged, so a registry's upload Locations point back at
// the proxy) and counts the raw bytes each way — headers included: what crosses the wire. It prints one JSON line
// {NAME: "127.0.0.1:PORT", control: "127.0.0.1:PORT"}; GET http://CONTROL/ answers {NAME: {up, down}} (up: client
// to registry), POST resets the counts.
import http from 'node:http'
import net from 'node:net'

const counts: Record<string, { up: number; down: number }> = {}
const listen = (server: net.Server) =>
  new Promise<string>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve(`127.0.0.1:${(server.address() as net.AddressInfo).port}`))
  )

async function main() {
  const addresses: Record<string, string> = {}
  for (const arg of process.argv.slice(2)) {
    const [name, target] = arg.split('=')
    const [host, port] = target.split(':')
    counts[name] = { up: 0, down: 0 }
    addresses[name] = await listen(net.createServer((client) => {
      const server = net.connect(Number(port), host)
      client.on('data', (chunk) => (counts[name].up += chunk.length))
      server.on('data', (chunk) => (counts[name].down += chunk.length))
      client.pipe(server).on('error', () => client.destroy())
      server.pipe(client).on('error', () => server.destroy())
      client.on('error', () => server.destroy())
      server.on('error', () => client.destroy())
    }))
  }
  const control = http.createServer((req, res) => {
    if (req.method === 'POST') { for (const c of Object.values(counts)) c.up = c.down = 0 }
    res.end(JSON.stringify(counts))
  })
  addresses.control = await listen(control)
  console.log(JSON.stringify(addresses))
}

main()
