// Webhooks from `tandem dev` checked with the reference Standard Webhooks
// library (npm `standardwebhooks`): a real receiver on this machine gets a
// failing first attempt and a retry; both verify with `Webhook.verify`, carry
// the same `webhook-id`, and a tampered body or another secret is refused.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { Webhook } from 'standardwebhooks'
import { startTandem, api, waitFor } from './harness.mjs'

// Retries in tens of milliseconds instead of seconds.
process.env.TANDEM_WEBHOOK_RETRY_SCALE = '0.01'
process.env.TANDEM_OUTBOX_POLL_MS = '50'

async function receiver (statuses) {
  const got = []
  const server = createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      got.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') })
      res.statusCode = statuses.shift() ?? 200
      res.end('ok')
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { got, url: `http://127.0.0.1:${server.address().port}/hooks`, close: () => server.close() }
}

test('webhooks verify with the standardwebhooks library, retries included', async () => {
  const t = await startTandem()
  const rx = await receiver([500])
  try {
    const a = api(t.controlUrl, t)
    const owner = await a.signup('olga@webhooks-interop.dev', 'Olga')
    const call = async (method, path, body) => {
      const res = await fetch(t.controlUrl + path, {
        method,
        headers: { authorization: `Bearer ${owner.token}`, 'content-type': 'application/json' },
        body: body ? JSON.stringify(body) : undefined
      })
      const text = await res.text()
      return { status: res.status, body: text ? JSON.parse(text) : null }
    }
    const orgId = (await call('GET', '/auth/session')).body.user.orgId
    const created = await call('POST', `/orgs/${orgId}/webhooks`, { url: rx.url, events: ['document.created', 'org.updated'] })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    const secret = created.body.secret
    assert.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/)
    const listed = await call('GET', `/orgs/${orgId}/webhooks`)
    assert.ok(!JSON.stringify(listed.body).includes(secret.slice(6)), 'the secret is shown once')

    const docId = await a.teamDoc(owner)
    await waitFor(() => rx.got.length >= 2, 10000, 'a failed attempt and its retry')
    const wh = new Webhook(secret)
    const [first, retry] = rx.got
    for (const r of [first, retry]) {
      const event = wh.verify(r.body, r.headers)
      assert.equal(event.type, 'document.created')
      assert.equal(event.data.id, docId)
      assert.match(r.headers['webhook-signature'], /^v1,/)
    }
    assert.equal(retry.headers['webhook-id'], first.headers['webhook-id'], 'one message id across attempts')
    assert.throws(() => wh.verify(first.body.replace(docId, 'x'), first.headers), /signature/i)
    assert.throws(() => new Webhook('whsec_' + Buffer.alloc(32, 7).toString('base64')).verify(first.body, first.headers))

    // Another event type, delivered at the first attempt.
    const patched = await call('PATCH', `/orgs/${orgId}`, { joinPolicy: 'approval' })
    assert.equal(patched.status, 200, JSON.stringify(patched.body))
    await waitFor(() => rx.got.length >= 3, 10000, 'org.updated')
    const org = wh.verify(rx.got[2].body, rx.got[2].headers)
    assert.equal(org.type, 'org.updated')
    assert.equal(org.data.joinPolicy, 'approval')
    assert.notEqual(rx.got[2].headers['webhook-id'], first.headers['webhook-id'])
  } finally {
    rx.close()
    await t.stop()
  }
})
