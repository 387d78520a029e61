# syntax=docker/dockerfile:1
# One Dockerfile for every binary of the workspace; BINARY picks which:
#
#   docker build --build-arg BINARY=quotestream-operator -t ghcr.io/quotestream/quotestream-operator:0.1.0 .
#   docker build --build-arg BINARY=quotestream-worker   -t ghcr.io/quotestream/quotestream-worker:0.1.0 .
#   docker build --build-arg BINARY=quotestream-store    -t ghcr.io/quotestream/quotestream-store:0.1.0 .
#
# `make images` makes equivalent images without Docker or a base image (docs/images.md).
# The build context is the repository root: cargo needs the whole workspace.

ARG RUST_VERSION=1.95
ARG BINARY=quotestream-worker

FROM rust:${RUST_VERSION}-bookworm AS build
ARG BINARY
WORKDIR /src
# Only what the build reads, so that a docs or chart change does not invalidate this layer:
# every workspace member (cargo loads all their manifests even to build one package) and what
# a crate reads from outside its own directory (the worker embeds examples/sp500.yaml).
# `make dockerfile-check` builds from exactly these COPY lines and fails when one is missing.
COPY Cargo.toml Cargo.lock ./
COPY api api
COPY db db
COPY operator operator
COPY runtime runtime
COPY store store
COPY worker worker
COPY tests/testkit tests/testkit
COPY examples examples
# BuildKit cache mounts keep the cargo registry and the compiled dependencies between builds,
# so a source change rebuilds only the workspace crates.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p "${BINARY}" \
    && install -D -m 0755 "target/release/${BINARY}" "/out/${BINARY}"

# glibc + libgcc + CA certificates, no shell, no package manager. TLS is rustls (ring) and time
# zones are compiled in (jiff's bundled tzdb). The CA bundle is for the worker's HTTPS sources
# and sinks (reqwest and redis verify against the system roots).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG BINARY
COPY --from=build "/out/${BINARY}" "/usr/local/bin/${BINARY}"
USER 65532:65532
# /metrics and the health endpoints (and the store's API).
EXPOSE 8080

# ENTRYPOINT cannot expand ${BINARY} (exec form is not substituted), so one two-line stage per
# binary; setting ENTRYPOINT clears an inherited CMD, hence CMD after it. `make images` reads
# each binary's CMD from here.
FROM runtime AS quotestream-operator
ENTRYPOINT ["/usr/local/bin/quotestream-operator"]
CMD ["run"]

FROM runtime AS quotestream-worker
ENTRYPOINT ["/usr/local/bin/quotestream-worker"]
CMD ["run"]

FROM runtime AS quotestream-store
ENTRYPOINT ["/usr/local/bin/quotestream-store"]
CMD ["serve"]

# The image is the stage named after BINARY.
FROM ${BINARY}
