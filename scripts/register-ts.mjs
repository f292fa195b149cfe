// Lets plain `node` run the project's .ts files (demo, bench, spawned sidecars in tests) through
// the same TypeScript loader tap uses. Type-checking is `npm run typecheck`'s job, so transpile only.
process.env.TS_NODE_TRANSPILE_ONLY ??= '1'
await import('@tapjs/typescript/import')
