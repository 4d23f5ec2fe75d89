# syntax=docker/dockerfile:1
# geusemaker for CI jobs: a small runtime image with the binary, the bundled recipes and stdlib
# (also built into the binary; these copies are for `cp` and reading) and CA certificates.
#
#   docker build --build-arg GEUSEMAKER_COMMIT="$(git rev-parse --short=12 HEAD)" -t geusemaker .
#   docker run --rm -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION \
#       -v geusemaker-state:/home/geusemaker/.geusemaker geusemaker run dev --name ci-stack --yes
#
# See packaging/README.md.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The commit for `geusemaker --version` (the build context has no .git).
ARG GEUSEMAKER_COMMIT=unknown
ARG SOURCE_DATE_EPOCH
ENV GEUSEMAKER_COMMIT=${GEUSEMAKER_COMMIT} SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY recipes ./recipes
COPY stdlib ./stdlib
RUN cargo build --release --locked \
 && install -m 0755 target/release/geusemaker /usr/local/bin/geusemaker \
 && geusemaker --version

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 geusemaker
COPY --from=build /usr/local/bin/geusemaker /usr/local/bin/geusemaker
COPY recipes /usr/share/geusemaker/recipes
COPY stdlib /usr/share/geusemaker/stdlib
USER geusemaker
ENV GEUSEMAKER_HOME=/home/geusemaker/.geusemaker
WORKDIR /home/geusemaker
ENTRYPOINT ["geusemaker"]
CMD ["--help"]
