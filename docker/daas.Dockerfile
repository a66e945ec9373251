# The daas portal: one binary. Build from the repository root:
#   docker build -f docker/daas.Dockerfile -t registry.example.org/daas/daas:0.1.0 .
# Queries are checked at run time (sqlx's runtime API), so the build needs no database and
# no sqlx offline data; the migrations are embedded in the binary.
# (No Docker engine runs where daas is developed: this file is kept plain and unbuilt there.)

FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY backend backend
COPY migrations migrations
COPY tests tests
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
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/daas"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
