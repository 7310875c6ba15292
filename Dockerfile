# syntax=docker/dockerfile:1
# podgate container image: `podgate serve` on Node 24, production dependencies only, non-root.
#   docker build -t ghcr.io/podgate/podgate:0.1.0 .
# Pin NODE_IMAGE to a digest (node:24-slim@sha256:…) in release builds.
ARG NODE_IMAGE=node:24-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: none gets to run code here, and the only one (the `node` dev dependency
# fetching a Node 24 for npm scripts on older machines) is not needed on this image's Node 24.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

FROM ${NODE_IMAGE}
# What forked gateway workers get (src/workers/worker-options.ts, docs/adr/0014-memory.md), for
# `podgate serve` itself: a fixed young generation (V8 would size it from the node's memory or
# the container's limit), two V8 background threads, two malloc arenas. Workers inherit them.
ENV NODE_ENV=production \
    HOME=/tmp \
    NODE_OPTIONS="--max-semi-space-size=8 --v8-pool-size=2" \
    MALLOC_ARENA_MAX=2
WORKDIR /app
# Owned by root and not writable by the runtime user: the process cannot change its own code.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Same uid/gid as the chart's podSecurityContext; numeric so runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["node", "dist/main.js"]
CMD ["serve"]
