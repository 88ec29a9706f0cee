# syntax=docker/dockerfile:1.7
#
# cache-gateway image: built on Node 24 LTS, run on distroless Node 24 as a non-root numeric user,
# with production dependencies only and no shell. Pin both base images by digest in your registry
# mirror or with Renovate (`node:24-bookworm-slim@sha256:...`); tags are shown for readability.

ARG NODE_VERSION=24

# ---- build: compile TypeScript, copy the Lua scripts, drop dev dependencies -------------------
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/copy-lua.mjs ./scripts/copy-lua.mjs
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/.cache

# ---- run: no shell, no package manager, uid 65532 ---------------------------------------------
FROM gcr.io/distroless/nodejs${NODE_VERSION}-debian12:nonroot AS run
WORKDIR /app
ENV NODE_ENV=production
# package.json: the version shown in the OpenAPI document; dist/: JS, every .lua script and .proto.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER 65532:65532
# API, then Prometheus metrics (PORT and METRICS_PORT; RLS_GRPC_PORT, off by default, is a third).
EXPOSE 8080 9464
# node is PID 1 (distroless entrypoint): SIGTERM reaches the gateway, which drains and exits 0.
STOPSIGNAL SIGTERM
# 64 MiB semi-spaces (V8's default is 16 MiB): the gateway allocates per request and keeps little,
# so fewer scavenges cut its GC time by about 45 % (load/RESULTS.md). Same flags as `npm start`.
CMD ["--max-semi-space-size=64", "dist/main.js"]
