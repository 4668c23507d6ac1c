// What the Chromium tests stand on: `tandem dev` (from tests/interop's
// harness), a static server on another port (so another origin than control)
// serving the built demo and the stock-yjs page, headless Debian Chromium,
// and small helpers for control's API, timing and screenshots.
import { createServer } from 'node:http'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { extname, join, normalize } from 'node:path'
import { build } from 'esbuild'
import puppeteer from 'puppeteer-core'

export { startTandem, waitFor } from '../interop/harness.mjs'

const ROOT = new URL('../../', import.meta.url).pathname
const DIST = join(ROOT, 'clients/demo/dist')
export const ARTIFACTS = join(ROOT, 'target/browser-artifacts')

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' }

// A test page (`plain/`: npm yjs + y-websocket and plain fetch; `sync/`: the
// built @tandem/client/sync over real IndexedDB), bundled with esbuild.
async function bundle (dir) {
  const out = await build({
    entryPoints: [new URL(`./${dir}/page.mjs`, import.meta.url).pathname],
    bundle: true, format: 'esm', write: false, logLevel: 'warning'
  })
  return out.outputFiles[0].text
}

const PAGES = ['plain', 'sync']

/** Serves clients/demo/dist (index.html for app routes), /plain/ and /sync/ on 127.0.0.1:0. */
export async function startStatic () {
  const pages = new Map()
  for (const dir of PAGES) {
    pages.set(`/${dir}/`, [TYPES['.html'], readFileSync(new URL(`./${dir}/index.html`, import.meta.url))])
    pages.set(`/${dir}/page.js`, [TYPES['.js'], await bundle(dir)])
  }
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname)
    const send = (type, body) => { res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' }); res.end(body) }
    const page = pages.get(path)
    if (page !== undefined) return send(...page)
    const file = join(DIST, normalize(path).replace(/^(\.\.[/\\])+/, ''))
    if (path.startsWith('/assets/') && existsSync(file)) return send(TYPES[extname(file)] ?? 'application/octet-stream', readFileSync(file))
    send(TYPES['.html'], readFileSync(join(DIST, 'index.html')))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${server.address().port}`
  return { origin, stop: () => new Promise((resolve) => server.close(resolve)) }
}

/** Debian's Chromium, headless, with a fresh profile. */
export async function launchChromium () {
  const profile = mkdtempSync(join(tmpdir(), 'tandem-chromium-'))
  const extra = (process.env.BROWSER_EXTRA_ARGS ?? '').split(' ').filter(Boolean)
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    userDataDir: profile,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extra]
  })
  return {
    browser,
    async close () { await browser.close(); rmSync(profile, { recursive: true, force: true }) }
  }
}

/** A page in its own browser context (its own storage: another user), watched. */
export async function openUser (browser, name) {
  const context = await browser.createBrowserContext()
  const page = await context.newPage()
  await page.setViewport({ width: 1280, height: 800 })
  const watch = { name, pageErrors: [], tokenRequests: 0, sockets: 0, httpErrors: [] }
  page.on('pageerror', (err) => watch.pageErrors.push(err))
  // Refused and failed requests, for a test's failure message.
  const path = (url) => { try { return new URL(url).pathname } catch { return url } }
  page.on('response', (res) => {
    if (res.status() >= 400) watch.httpErrors.push(`${new Date().toISOString()} ${res.status()} ${res.request().method()} ${path(res.url())}`)
  })
  page.on('requestfailed', (req) => {
    watch.httpErrors.push(`${new Date().toISOString()} failed ${req.method()} ${path(req.url())}: ${req.failure()?.errorText}`)
  })
  page.on('request', (req) => {
    if (req.method() === 'POST' && req.url().endsWith('/collaboration/token')) watch.tokenRequests++
  })
  const cdp = await page.createCDPSession()
  await cdp.send('Network.enable')
  cdp.on('Network.webSocketCreated', () => { watch.sockets++ })
  return { context, page, cdp, watch }
}

export async function screenshot (page, name) {
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) })
}

/** Control's API from Node. */
export function api (controlUrl) {
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
    call,
    async signup (email, displayName, password = 'password123') {
      const r = await call('POST', '/auth/signup', null, { email, password, displayName })
      return { id: r.user.id, token: r.sessionToken, email, password }
    },
    async personalDoc (owner) {
      const s = await call('GET', '/auth/session', owner.token)
      const ws = s.workspaces.find((w) => w.type === 'personal').id
      const p = await call('POST', `/workspaces/${ws}/projects`, owner.token, { name: 'P' })
      return (await call('POST', `/projects/${p.id}/documents`, owner.token, { title: 'D' })).id
    }
  }
}

/** Milliseconds `fn` took. */
export async function timed (fn) {
  const start = performance.now()
  await fn()
  return performance.now() - start
}
