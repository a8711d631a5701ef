// npm run demo: the whole action against the local AWS emulator (being written; see issue 5).
console.error('demo: not ready yet (issue 5 in progress)')
process.exit(1)
