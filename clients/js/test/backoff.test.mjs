// Reconnect delays: exponential, capped, jittered within [cap/2, cap].
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Backoff } from '@tandem/client'

test('delays double up to the cap, each drawn from [cap/2, cap], and reset after a success', () => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000 })
  const caps = [100, 200, 400, 800, 1000, 1000, 1000]
  const seen = new Set()
  for (let round = 0; round < 50; round++) {
    b.reset()
    for (const cap of caps) {
      const d = b.next()
      assert.ok(d >= cap / 2 && d <= cap, `${d} within [${cap / 2}, ${cap}]`)
      seen.add(d)
    }
  }
  assert.ok(seen.size > caps.length * 5, 'delays are jittered, not fixed')
  b.reset()
  assert.equal(b.attempts, 0)
  assert.ok(b.next() <= 100)
})
