// The QEMU boot tests (npm run test:boot): slow (software emulation), so not in `npm test`.
import base from './jest.config.js'

export default {
  ...base,
  testMatch: ['**/__tests__/boot/**/*.boot.ts'],
  collectCoverage: false,
  testTimeout: 30 * 60_000
}
