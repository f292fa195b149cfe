# asya-sidecar: compiled TypeScript on Node 22 slim, non-root, read-only root filesystem friendly.
#   docker build -f deploy/docker/sidecar.Dockerfile -t ghcr.io/asya-ts/asya-sidecar:0.1.0 .
FROM node:22-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-fund --no-audit
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY sidecar ./sidecar
COPY webhook ./webhook
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

FROM node:22-slim
ENV NODE_ENV=production
# A small heap: the sidecar holds a few envelopes at a time. A 2 MiB young generation and a 256 MiB
# old-generation cap make V8 collect early (RSS under load ~70 MB instead of ~100 MB) while still
# carrying envelopes of tens of MB (test/sidecar/process.test.ts sends 40 MB under these flags).
# Memory per large envelope in flight is ~8 x its size: see NODE_OPTIONS in docs/configuration.md.
ENV NODE_OPTIONS="--max-semi-space-size=2 --max-old-space-size=256"
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["node", "dist/sidecar/main.js"]
