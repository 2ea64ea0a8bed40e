# syntax=docker/dockerfile:1
#
# portcullis in a container: built with the Rust toolchain, run on Debian
# slim as the unprivileged `portcullis` user (uid and gid 10001), laid out
# by the same scripts/install.sh as a host install (without the systemd
# unit).
#
#   docker build -t portcullis .
#   docker run -d --name portcullis -p 443:8443 \
#     -v /srv/portcullis/portcullis.yaml:/etc/portcullis/portcullis.yaml:ro \
#     -v /srv/portcullis/policies:/etc/portcullis/policies:ro \
#     -v /srv/portcullis/tls.crt:/etc/portcullis/tls.crt:ro \
#     -v /srv/portcullis/tls.key:/etc/portcullis/tls.key:ro \
#     -v /run/secrets/okta_client_secret:/run/secrets/okta_client_secret:ro \
#     -v portcullis-state:/var/lib/portcullis \
#     portcullis
#   docker run --rm -v …same config… portcullis check   # any subcommand
#
# The config is /etc/portcullis/portcullis.yaml (PORTCULLIS_CONFIG); state
# (SQLite store, signing keys) lives in the /var/lib/portcullis volume.
# Mounted files must be readable by uid 10001 (e.g. the key: chgrp 10001,
# mode 0640).
# Secrets: `client_secret_file: /run/secrets/…` and the like, or `${VAR}`
# with `docker run -e`.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# Pingora's zlib-ng build needs cmake. Package versions are not pinned
# (DL3008): Debian drops superseded versions from its mirrors, and the
# release is pinned by the base image.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target caches speed up rebuilds; the binary is copied
# out of the cached target folder, which the next stage cannot see.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portcullis \
 && install -D -m 0755 target/release/portcullis /out/portcullis

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: TLS to Okta, upstreams and PostgreSQL reads the system
# trust store.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The install script, the example config and the binary are mounted for
# this one step only, so none of them adds a layer of its own.
RUN --mount=type=bind,from=build,source=/out/portcullis,target=/mnt/portcullis \
    --mount=type=bind,source=scripts/install.sh,target=/mnt/src/scripts/install.sh \
    --mount=type=bind,source=conf,target=/mnt/src/conf \
    bash /mnt/src/scripts/install.sh --bin /mnt/portcullis --conf /mnt/src/conf \
      --prefix /usr/local --uid 10001 --no-systemd

# Numeric, so that a runtime can tell it is not root (Kubernetes'
# runAsNonRoot) without reading the image's /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/portcullis
VOLUME ["/var/lib/portcullis"]
# RUST_LOG is left to the default filter (info, Pingora's own at warn).
ENV PORTCULLIS_CONFIG=/etc/portcullis/portcullis.yaml
# 8443: the example config's proxy listener (map 443 to it). 9464: the
# metrics listener (/metrics, /healthz, /readyz), if the config listens on
# all addresses; the example keeps it on 127.0.0.1, which the health check
# below reaches from inside the container.
EXPOSE 8443 9464
# /readyz is 200 once every listener is bound and the identity providers'
# discovery has succeeded. The slim image has no curl: bash's /dev/tcp
# speaks the one request. PORTCULLIS_METRICS_PORT if the config uses
# another port.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORTCULLIS_METRICS_PORT:-9464} && printf 'GET /readyz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r _ status _ <&3 && [ \"$status\" = 200 ]"]
# `portcullis run -c /etc/portcullis/portcullis.yaml` (the config from
# PORTCULLIS_CONFIG); `docker run … portcullis check` runs another
# subcommand on the same config.
ENTRYPOINT ["portcullis"]
CMD ["run"]
