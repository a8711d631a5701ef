// Entry point for both `main` and `post` (action.yml runs dist/index.js for each).
import { isMainThread } from 'node:worker_threads'
import * as core from '@actions/core'
import { main } from './main.js'
import { post } from './post.js'

const IS_POST = 'isPost'

// ncc bundles everything into this one file, which the bundle decoder's worker thread runs too
// (decode-thread.ts): there, only the decoder starts, neither main nor post.
if (!isMainThread) {
  // decode-thread.ts's own top-level code runs the worker
} else if (core.getState(IS_POST) === 'true') {
  await post().catch((err: unknown) => core.warning(`Cleanup failed: ${String(err)}`))
} else {
  core.saveState(IS_POST, 'true')
  const controller = new AbortController()
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      core.warning(`Received ${signal}: stopping and cleaning up what this run created.`)
      controller.abort()
    })
  }
  await main({ signal: controller.signal }).catch((err: unknown) =>
    core.setFailed(`Unexpected error: ${String(err)}`)
  )
}
