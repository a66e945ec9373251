# The daas portal: one binary plus the browser assets it serves. Build from the repository
# root:
#   docker build -f docker/daas.Dockerfile -t registry.example.org/daas/daas:0.1.0 .
# Queries are checked at run time (sqlx's runtime API), so the build needs no database and
# no sqlx offline data; the migrations, the askama templates and the notebooks' Jupyter
# settings are compiled in.
# (No Docker engine runs where daas is developed: this file is kept plain and unbuilt there.)

FROM node:22-bookworm-slim AS assets
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY backend backend
COPY migrations migrations
COPY frontend/templates frontend/templates
COPY tests tests
# Compiled in: the Jupyter settings the Kubernetes runtime gives each notebook.
COPY tools/jupyter tools/jupyter
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin daas \
 && cp target/release/daas /usr/local/bin/daas

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin daas
COPY --from=build /usr/local/bin/daas /usr/local/bin/daas
COPY frontend/static /usr/share/daas/frontend/static
COPY --from=assets /src/frontend/node_modules /usr/share/daas/frontend/node_modules
ENV DAAS_FRONTEND_DIR=/usr/share/daas/frontend
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/daas"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
