# syntax=docker/dockerfile:1
#
# Edgeway: ONE image, THREE binaries.
#
#   /usr/local/bin/edgeway-sidecar    gateway sidecar   (the image's default ENTRYPOINT)
#   /usr/local/bin/edgeway-operator   Kubernetes operator
#   /usr/local/bin/edgeway-platform   reference AlwaysOn platform (demos, e2e)
#
# The default ENTRYPOINT is the sidecar because the operator's StatefulSets set only `args:`
# (`--config /etc/edgeway/config/...`) for the sidecar container, so the operator's
# `--sidecar-image` can be this same image. The Helm chart (charts/edgeway) sets `command:`
# for the operator and the platform containers.
#
# Static binaries (glibc, `-C target-feature=+crt-static` for x86_64-unknown-linux-gnu: mlua
# vendors Lua, ring builds its C, both link statically), a `scratch` final stage: no shell, no
# libc, no package manager, no /etc/passwd. The user is numeric, 65532:65532 (runAsNonRoot
# needs a numeric USER). /tmp exists (mode 1777) for the operator's Lua syntax check; mount an
# emptyDir there when the root filesystem is read-only (the chart does).
#
# hack/build-image.sh builds the same contents without Docker (an OCI image tarball for
# `ctr images import`); keep the two in step: same cargo command, same paths, same user,
# same entrypoint.
#
#   docker build -t edgeway/edgeway:0.1.0 .
#   docker run --rm edgeway/edgeway:0.1.0 --help                                 # sidecar
#   docker run --rm --entrypoint /usr/local/bin/edgeway-operator edgeway/edgeway:0.1.0 crd
#
# Only x86_64 (linux/amd64) is supported by this file (the target triple is fixed).

ARG RUST_IMAGE=rust:1-bookworm

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
# C toolchain for ring and the vendored Lua; static glibc comes with libc6-dev (libc.a);
# binutils for strip.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev binutils \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-gnu
COPY . .
# --target makes RUSTFLAGS apply to the binaries only, not to build scripts and proc macros
# (a crt-static proc macro cannot be loaded). The binaries are stripped, must be static (ldd exits
# 0 with "statically linked" for static-pie: dynamic means a "=>" line) and must run --help.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target x86_64-unknown-linux-gnu \
      -p edgeway-operator -p edgeway-sidecar -p edgeway-platform --bins \
 && mkdir -p /out/usr/local/bin /out/tmp \
 && for b in edgeway-operator edgeway-sidecar edgeway-platform; do \
      install -m 0755 target/x86_64-unknown-linux-gnu/release/$b /out/usr/local/bin/$b; \
      strip --strip-all /out/usr/local/bin/$b; \
      if ldd /out/usr/local/bin/$b 2>&1 | grep -q '=>'; then \
        echo "$b is dynamically linked" >&2; exit 1; \
      fi; \
      /out/usr/local/bin/$b --help >/dev/null; \
    done \
 && chmod 1777 /out/tmp

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="edgeway" \
      org.opencontainers.image.description="Edgeway: edgeway-sidecar (entrypoint), edgeway-operator, edgeway-platform" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/ /
ENV PATH=/usr/local/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/edgeway-sidecar"]
