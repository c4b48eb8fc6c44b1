# Recall: one replica per container, managing its own MariaDB.
#   docker build -t recall .
#   docker run -p 8500:8500 -p 8700:8700 -v recall-data:/var/lib/recall recall
# Configure with RECALL_* variables or flags after the image name (e.g. --debug).

# --- build: compile TypeScript, then keep only production dependencies ---
FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY docker/tsconfig.build.json docker/
COPY src/ src/
RUN npx tsc -p docker/tsconfig.build.json && npm prune --omit=dev

# --- runtime: node + MariaDB server, no compilers ---
FROM node:20-bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server mariadb-client openssl ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/lib/mysql/* \
 && groupadd --system recall && useradd --system --gid recall --home-dir /var/lib/recall --shell /usr/sbin/nologin recall \
 && mkdir -p /var/lib/recall && chown recall:recall /var/lib/recall
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules/ node_modules/
COPY --from=build /app/dist/ dist/
COPY bin/ bin/
COPY docker/healthcheck.mjs docker/

ENV NODE_ENV=production \
    RECALL_MANAGED=true \
    RECALL_DATA_DIR=/var/lib/recall \
    RECALL_LISTEN_MYSQL=0.0.0.0:8500 \
    RECALL_LISTEN_POSTGRES=0.0.0.0:8532 \
    RECALL_LISTEN_PEER=0.0.0.0:8600 \
    RECALL_LISTEN_ADMIN=0.0.0.0:8700 \
    RECALL_LOG_FORMAT=json

USER recall
VOLUME ["/var/lib/recall"]
EXPOSE 8500 8532 8600 8700
# A first start initialises the database, hence the start period.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["node", "/app/docker/healthcheck.mjs"]
ENTRYPOINT ["node", "/app/bin/recall", "serve"]
CMD []
