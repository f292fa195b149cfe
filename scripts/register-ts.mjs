// Lets plain `node` run the project's .ts files (demo, bench, prober, spawned sidecars in tests).
// tsx (esbuild) transpiles without loading the TypeScript compiler: a spawned sidecar starts on
// ~0.6 s of CPU instead of ~1.6 s with ts-node, which the prober pays for every sidecar it
// starts. Type-checking stays `npm run typecheck`'s job; tap keeps its own loader for test files.
import { register } from 'tsx/esm/api'

register()
