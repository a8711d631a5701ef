// Every EC2 wait on a fake clock: it must see that AWS has finished within about 5 s of it
// happening, and make at most one call per 5 s while it waits.
import { describe, expect, it } from '@jest/globals'
import type { EC2Client } from '@aws-sdk/client-ec2'
import {
  WAIT_INTERVAL_MS,
  type WaitOptions,
  waitForAttachment,
  waitForDetachment,
  waitForImageAvailable,
  waitForSnapshotCompleted,
  waitForVolumeAvailable
} from '../../src/aws/ec2-wait.js'
import { waitForInstanceRunning } from '../../src/aws/instances.js'

/** A clock that only moves when a wait sleeps. */
function fakeClock() {
  const clock = {
    t: 0,
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.t += ms
    }
  }
  return clock
}

/** What DescribeX answers before and after AWS has finished. */
interface Thing {
  name: string
  answer: (finished: boolean) => unknown
  wait: (ec2: EC2Client, o: WaitOptions) => Promise<unknown>
}

const volume = (state: string, attachments: { InstanceId: string; State: string }[] = []) => ({
  Volumes: [{ VolumeId: 'vol-1', State: state, Attachments: attachments }]
})

const things: Thing[] = [
  {
    name: 'volume available',
    answer: (f) => volume(f ? 'available' : 'creating'),
    wait: (ec2, o) => waitForVolumeAvailable(ec2, 'vol-1', o)
  },
  {
    name: 'attachment',
    answer: (f) => volume('in-use', [{ InstanceId: 'i-1', State: f ? 'attached' : 'attaching' }]),
    wait: (ec2, o) => waitForAttachment(ec2, 'vol-1', 'i-1', o)
  },
  {
    name: 'detachment',
    answer: (f) => volume(f ? 'available' : 'in-use', f ? [] : [{ InstanceId: 'i-1', State: 'detaching' }]),
    wait: (ec2, o) => waitForDetachment(ec2, 'vol-1', o)
  },
  {
    name: 'snapshot completed',
    answer: (f) => ({
      Snapshots: [{ SnapshotId: 'snap-1', State: f ? 'completed' : 'pending', Progress: '40%' }]
    }),
    wait: (ec2, o) => waitForSnapshotCompleted(ec2, 'snap-1', { ...o, fix: 'run again' })
  },
  {
    name: 'image available',
    answer: (f) => ({ Images: [{ ImageId: 'ami-1', State: f ? 'available' : 'pending' }] }),
    wait: (ec2, o) => waitForImageAvailable(ec2, 'ami-1', { ...o, what: 'AMI ami-1', fix: 'run again' })
  },
  {
    name: 'instance running',
    answer: (f) => ({
      Reservations: [{ Instances: [{ InstanceId: 'i-1', State: { Name: f ? 'running' : 'pending' } }] }]
    }),
    wait: (ec2, o) => waitForInstanceRunning(ec2, 'i-1', o)
  }
]

/** Runs one wait against a fake EC2 that finishes at `finishAt` ms; the times of its calls and its end. */
async function measure(thing: Thing, finishAt: number) {
  const clock = fakeClock()
  const calls: number[] = []
  const ec2 = {
    send: async () => {
      calls.push(clock.t)
      return thing.answer(clock.t >= finishAt)
    }
  } as unknown as EC2Client
  await thing.wait(ec2, { now: clock.now, sleep: clock.sleep, timeoutSeconds: 3600 })
  return { calls, seenAfter: clock.t - finishAt }
}

describe('EC2 waits on a fake clock', () => {
  it('ask every 5 s', () => expect(WAIT_INTERVAL_MS).toBe(5000))

  describe.each(things)('$name', (thing) => {
    it.each([0, 1, 4999, 5001, 37000, 61000, 600000])(
      'AWS finishes at %i ms: seen within 5 s, at most one call per 5 s',
      async (finishAt) => {
        const { calls, seenAfter } = await measure(thing, finishAt)
        expect(seenAfter).toBeGreaterThanOrEqual(0)
        expect(seenAfter).toBeLessThanOrEqual(5000)
        for (let i = 1; i < calls.length; i++)
          expect((calls[i] as number) - (calls[i - 1] as number)).toBeGreaterThanOrEqual(5000)
        // Not one call more than the interval allows: the first at once, then one per 5 s.
        expect(calls.length).toBe(Math.ceil(finishAt / 5000) + 1)
      }
    )
  })
})
