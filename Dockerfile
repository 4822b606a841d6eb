# Forge's production image: the API (`forge start`) and the runner (`forge runner`) on a ClickHouse server or
# cluster and Redis. Node 20, non-root, no build step (tsx runs the TypeScript). Built by
# .github/workflows/release.yml; run by terraform/ (args: start | runner).

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; chdb (the embedded engine) stays a dependency of the code but is never opened:
# the image refuses to start without FORGE_CLICKHOUSE_URL (below).
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    FORGE_HOST=0.0.0.0 \
    FORGE_PORT=8080 \
    FORGE_DATA_DIR=/var/lib/forge
WORKDIR /app
RUN groupadd --system --gid 10001 forge && useradd --system --uid 10001 --gid forge --home-dir /app forge \
    && mkdir -p /var/lib/forge && chown forge:forge /var/lib/forge
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY ui ./ui
COPY rules ./rules
COPY store ./store
COPY collector ./collector
COPY guard ./guard
COPY alerts ./alerts
COPY billing ./billing
COPY runner ./runner
COPY eval ./eval
COPY dashboards ./dashboards
COPY accounts ./accounts
COPY api ./api
COPY cli ./cli
COPY config ./config
USER 10001:10001
EXPOSE 8080
# The embedded store is off in this image: `start` needs a ClickHouse server (FORGE_CLICKHOUSE_URL).
ENTRYPOINT ["/bin/sh", "-c", "if [ \"$1\" = start ] && [ -z \"$FORGE_CLICKHOUSE_URL\" ]; then echo 'forge: FORGE_CLICKHOUSE_URL: required in this image (the embedded store is off)' >&2; exit 2; fi; exec node bin/forge.mjs \"$@\"", "forge"]
CMD ["start"]
