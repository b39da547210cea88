# syntax=docker/dockerfile:1
# The image users run: one static binary, no shell, non-root.
#   docker build -t mvconf .
FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin mvconf

FROM scratch AS runtime
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/release/mvconf /mvconf
USER 65532:65532
# The allocator (mimalloc) gives freed memory back at once and commits
# memory as it is used, not whole arenas ahead (lower RSS; the chart sets
# the same).
ENV MIMALLOC_PURGE_DELAY=0 MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_EAGER_COMMIT=0
ENTRYPOINT ["/mvconf"]
CMD ["operator"]
