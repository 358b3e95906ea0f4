# syntax=docker/dockerfile:1
# Build: docker build -t orchestrator:dev .
FROM rust:1.89-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --bin orchestrator || true
COPY src ./src
COPY crds ./crds
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin orchestrator

# glibc, OpenSSL and CA certificates, no shell, user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/orchestrator /usr/local/bin/orchestrator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/orchestrator"]
CMD ["run", "--help"]
