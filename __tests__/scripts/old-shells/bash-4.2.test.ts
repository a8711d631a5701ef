// bundle.sh, bundle-checks.sh and common.sh run on Ubuntu 12.04 sources under bash 4.2: their whole
// suites again with that bash, and the SSM command text under dash (see old-shell.ts).
import { underOldBash } from './old-shell.js'

await underOldBash('4.2')
