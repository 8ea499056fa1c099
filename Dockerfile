# comfycord: multi-stage build, slim non-root runtime.
#   docker build -t comfycord .
#   docker run -d --name comfycord -e DISCORD_TOKEN=… \
#     -v "$PWD/config.json:/config/config.json:ro" -v comfycord-data:/data -v comfycord-outputs:/outputs \
#     -p 127.0.0.1:9100:9100 comfycord
# The config file is optional: with none mounted, env vars alone configure it
# (-e COMFYUI_URL=http://gpu:8188, or -e COMFYCORD_BACKENDS='[{name="gpu",url="http://gpu:8188"}]').
# crates/bot/tests/cli.rs runs this file's ENV, WORKDIR and ENTRYPOINT against a fake Discord.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# gcc comes with the image: ring and the bundled SQLite need only a C compiler.
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY tests tests
RUN cargo build --release --locked -p bot --bin comfycord \
 && strip target/release/comfycord

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin comfycord \
 && mkdir -p /config /data /outputs \
 && chown comfycord /data /outputs
COPY --from=build /src/target/release/comfycord /usr/local/bin/comfycord
COPY workflows /app/workflows
# Paths inside the container; everything else comes from /config/config.json and env vars.
ENV COMFYCORD_WORKFLOWS_DIR=/app/workflows \
    COMFYCORD_DATA_DIR=/data \
    COMFYCORD_OUTPUTS__DIR=/outputs \
    COMFYCORD_HEALTH__LISTEN=0.0.0.0:9100 \
    RUST_LOG=info
VOLUME ["/config", "/data", "/outputs"]
EXPOSE 9100
USER comfycord
# ./config.json is read when present (mounted at /config/config.json) and skipped when not.
WORKDIR /config
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["comfycord", "healthcheck"]
ENTRYPOINT ["comfycord"]
