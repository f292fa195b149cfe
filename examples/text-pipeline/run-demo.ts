// Placeholder until the sidecar lands (issue 3): the demo needs the sidecar and memory transport.
console.log('asya demo: not yet: the sidecar and the memory transport are being built (issue 3).')
