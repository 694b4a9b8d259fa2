# syntax=docker/dockerfile:1
# Multi-stage build on Debian bookworm: compile in a full toolchain image,
# run in a slim one as a non-root user.

FROM debian:bookworm AS build
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      cmake ninja-build g++ pkg-config ca-certificates \
      libboost1.81-dev libssl-dev nlohmann-json3-dev librocksdb-dev libyaml-cpp-dev \
      libvalijson-dev libpg-query-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt CMakePresets.json ./
COPY gateway gateway
COPY scoring scoring
COPY plugins plugins
RUN cmake --preset release -DARBITER_BUILD_TESTS=OFF -DARBITER_BUILD_BENCH=OFF \
    && cmake --build --preset release --target arbiter \
    && strip build/release/arbiter

FROM debian:bookworm-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates libssl3 librocksdb7.8 libyaml-cpp0.7 libpg-query1504.0 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system arbiter && useradd --system --gid arbiter --home /var/lib/arbiter arbiter \
    && mkdir -p /etc/arbiter /var/lib/arbiter && chown arbiter:arbiter /var/lib/arbiter
COPY --from=build /src/build/release/arbiter /usr/local/bin/arbiter
COPY conf/docker.yaml /etc/arbiter/arbiter.yaml
# LLM-judge templates, for `template_file: /etc/arbiter/judges/<name>.txt`
COPY conf/judges /etc/arbiter/judges
USER arbiter
VOLUME /var/lib/arbiter
EXPOSE 8787 8585
ENTRYPOINT ["/usr/local/bin/arbiter"]
CMD ["--config", "/etc/arbiter/arbiter.yaml"]
