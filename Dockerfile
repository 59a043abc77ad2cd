# syntax=docker/dockerfile:1
#
# spbridge container image.
#   build:   docker build -t spbridge:0.1.0 .
#   run:     docker run -p 8080:8080 -v "$PWD/spbridge.toml:/etc/spbridge/spbridge.toml:ro" \
#              -v fhir-packages:/fhir-packages spbridge:0.1.0
#            (the config must listen on 0.0.0.0; install the FHIR packages first with
#             `docker run -v fhir-packages:/fhir-packages spbridge:0.1.0 packages install \
#               --packages /fhir-packages hl7.fhir.r4.core#4.0.1 …`)
#
# Stage 1 builds the release binary with the locked dependency set (Cargo.lock). aws-lc-sys
# (rustls' crypto provider) and SQLite are compiled from source by cc; the Rust image has the C
# toolchain, nothing else is needed. Stage 2 is distroless "cc" (glibc, libgcc, CA
# certificates, no shell, no package manager) running as the non-root user 65532.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The registry and target caches speed up rebuilds (BuildKit); the binary is copied out of the
# cached target folder in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && install -D -m 0755 target/release/spbridge /out/usr/local/bin/spbridge \
 && mkdir -p /out/usr/share/spbridge \
 && cp -r profiles /out/usr/share/spbridge/profiles \
 && mkdir -p /out-writable/fhir-packages

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="spbridge" \
      org.opencontainers.image.description="FHIR R4 social-prescribing referral bridge: UK Core validation, durable outbox, RabbitMQ delivery" \
      org.opencontainers.image.source="https://github.com/spbridge/spbridge" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /
# Default FHIR package cache: a mount point the non-root user can write to when no volume is
# mounted there (the Helm chart mounts an emptyDir or a PVC).
COPY --from=build --chown=65532:65532 /out-writable/fhir-packages /fhir-packages
# spbridge's own profile package and the FHIR package cache (package-cache layout).
ENV SPBRIDGE_PROFILES=/usr/share/spbridge/profiles \
    SPBRIDGE_FHIR_PACKAGES=/fhir-packages
# distroless' "nonroot" user, given numerically so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/spbridge"]
CMD ["serve", "--config", "/etc/spbridge/spbridge.toml"]
