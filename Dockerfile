# gunsync: multi-stage build. The release build uses the committed sqlx query data (.sqlx/), so it
# needs no database; the runtime image is slim, runs as a non-root user and keeps the ledger on
# the /data volume.

FROM rust:1.94-slim-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true CARGO_TERM_COLOR=never
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
RUN mkdir src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY .sqlx .sqlx
COPY migrations migrations
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin gunsync

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl sqlite3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 gunsync \
    && useradd --system --uid 10001 --gid gunsync --home-dir /data --shell /usr/sbin/nologin gunsync \
    && mkdir -p /data && chown gunsync:gunsync /data
COPY --from=build /src/target/release/gunsync /usr/local/bin/gunsync
ENV GUNSYNC_DATABASE=/data/gunsync.db \
    GUNSYNC_LISTEN=0.0.0.0:9464 \
    RUST_LOG=info
VOLUME ["/data"]
EXPOSE 9464
USER gunsync
WORKDIR /data
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9464/healthz || exit 1
# SIGTERM (docker stop) is a graceful stop: running jobs get 8 s, under Docker's 10 s default.
STOPSIGNAL SIGTERM
ENTRYPOINT ["gunsync"]
CMD ["run"]
