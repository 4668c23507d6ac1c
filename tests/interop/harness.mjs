// Starts `tandem dev` (control + relay, fresh SQLite file, ports picked by
// the OS) and offers small helpers over control's HTTP API.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const BIN = process.env.TANDEM_BIN || new URL('../../target/debug/tandem', import.meta.url).pathname

export async function startTandem (extraArgs = []) {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-interop-'))
  const child = spawn(BIN, [
    'dev', '--listen', '127.0.0.1:0', '--relay-listen', '127.0.0.1:0',
    '--database-url', `sqlite://${join(dir, 'tandem.db')}`, ...extraArgs
  ], { env: { ...process.env, TANDEM_PBKDF2_ITERATIONS: '1000', RUST_LOG: process.env.RUST_LOG || 'warn', TANDEM_FILES_DIR: join(dir, 'files') }, stdio: ['ignore', 'pipe', 'inherit'] })
  // `tandem dev` prints each email's link: `verify EMAIL: LINK`.
  const links = new Map()
  let pending = ''
  child.stdout.on('data', (chunk) => {
    pending += chunk
    const lines = pending.split('\n')
    pending = lines.pop()
    for (const line of lines) {
      const m = line.match(/^verify (\S+): (\S+)$/)
      if (m) links.set(m[1], m[2])
    }
  })
  const verifyLink = async (email) => {
    await waitFor(() => links.has(email), 10000, `the verification link for ${email}`)
    return links.get(email)
  }
  const urls = await new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`tandem dev did not start: ${out}`)), 30000)
    child.on('exit', (code) => reject(new Error(`tandem dev exited with ${code}: ${out}`)))
    child.stdout.on('data', (chunk) => {
      out += chunk
      const control = out.match(/control\s+(http:\/\/\S+)/)
      const relay = out.match(/relay\s+(ws:\/\/\S+)/)
      if (control && relay) { clearTimeout(timer); resolve({ controlUrl: control[1], relayUrl: relay[1] }) }
    })
  })
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
    rmSync(dir, { recursive: true, force: true })
  }
  return { ...urls, stop, verifyLink }
}

// Control's HTTP API. With `verifyLink` (from `startTandem`), signup also
// opens the printed verification link, as a person would.
export function api (controlUrl, { verifyLink } = {}) {
  const call = async (method, path, token, body) => {
    const res = await fetch(controlUrl + path, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined
    })
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
    return text ? JSON.parse(text) : null
  }
  return {
    async signup (email, displayName) {
      const r = await call('POST', '/auth/signup', null, { email, password: 'password123', displayName })
      if (verifyLink) {
        const token = new URL(await verifyLink(email)).searchParams.get('token')
        await call('POST', '/auth/verify-email', null, { token })
      }
      return { id: r.user.id, token: r.sessionToken }
    },
    async teamDoc (owner) {
      const s = await call('GET', '/auth/session', owner.token)
      const ws = s.workspaces.find((w) => w.type === 'team').id
      const p = await call('POST', `/workspaces/${ws}/projects`, owner.token, { name: 'P' })
      return (await call('POST', `/projects/${p.id}/documents`, owner.token, { title: 'D' })).id
    },
    collabToken: async (user, docId) => (await call('POST', '/collaboration/token', user.token, { resourceType: 'doc', resourceId: docId })).token,
    share: (owner, doc, user, role) => call('POST', `/documents/${doc}/members`, owner.token, { userId: user.id, role }),
    unshare: (owner, doc, user) => call('DELETE', `/documents/${doc}/members/${user.id}`, owner.token)
  }
}

export async function waitFor (pred, ms = 10000, what = 'condition') {
  const start = Date.now()
  while (!pred()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
