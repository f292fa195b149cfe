# asya-system: admission webhook + controller. Needs openssl for the self-managed CA mode and the
# runtime script for the asya-runtime ConfigMap.
#   docker build -f deploy/docker/system.Dockerfile -t ghcr.io/asya-ts/asya-system:0.1.0 .
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
RUN apt-get update && apt-get install -y --no-install-recommends openssl && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY runtime-py/asya_runtime.py ./runtime-py/asya_runtime.py
COPY package.json ./
ENV ASYA_RUNTIME_SCRIPT=/app/runtime-py/asya_runtime.py
USER 65532:65532
EXPOSE 8443 8081
ENTRYPOINT ["node", "dist/src/system/main.js"]
