# shoald in a container: build on Debian bookworm, run on bookworm-slim as a
# non-root user.
#
#   docker build -t shoal .
#   docker run --rm --ulimit nofile=1048576:1048576 \
#     -p 7000:7000 -p 7001:7001 -p 127.0.0.1:7070:7070 shoal
#
# Mount your own config at /etc/shoal/shoal.yaml (-v ./my.yaml:/etc/shoal/shoal.yaml:ro).

FROM debian:bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not reinstall packages; only
# what compiling shoald needs (no clang, no test tools).
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN deploy/install-deps.sh docker-build && rm -rf /var/lib/apt/lists/*
COPY . .
# Only shoald, without the tests. The ccache cache mount outlives the layer:
# a rebuild after a source change recompiles only what changed (Docker
# BuildKit and buildah both keep it; without one the build is just cold).
RUN --mount=type=cache,target=/root/.cache/ccache \
    export CCACHE_DIR=/root/.cache/ccache CCACHE_MAXSIZE=2G \
 && cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
      -DCMAKE_INSTALL_PREFIX=/usr \
 && cmake --build /build -j "$(nproc)" --target shoald \
 && strip /build/server/shoald \
 && { ccache --show-stats | grep -Ei 'hits|misses' || true; }

FROM debian:bookworm-slim
COPY deploy/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh runtime && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh \
 && useradd --no-create-home --uid 10001 --shell /usr/sbin/nologin shoal
COPY --from=build /build/server/shoald /usr/bin/shoald
COPY deploy/docker/shoal.yaml /etc/shoal/shoal.yaml
USER shoal
# TCP echo, WebSocket echo, admin (/metrics, /healthz).
EXPOSE 7000 7001 7070
STOPSIGNAL SIGTERM
# The daemon probes its own /healthz: no curl needed in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/bin/shoald", "--probe", "127.0.0.1:7070"]
# Logs go to stdout (docker logs); JSON lines suit log collectors.
ENTRYPOINT ["/usr/bin/shoald"]
CMD ["--config", "/etc/shoal/shoal.yaml"]
