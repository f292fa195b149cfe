# asya-gateway: MCP/HTTP entry point (SPEC §10.1). Stateless; state lives in PostgreSQL.
#   docker build -f deploy/docker/gateway.Dockerfile -t ghcr.io/asya-ts/asya-gateway:0.1.0 .
FROM node:22-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-fund --no-audit
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY sidecar ./sidecar
COPY webhook ./webhook
COPY gateway ./gateway
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

FROM node:22-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["node", "dist/gateway/main.js"]
