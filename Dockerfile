# A small non-root image: the operator binary on distroless (glibc, CA certificates, no shell).
# `make image` builds an equivalent image locally without a registry (hack/image.sh).
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin librechat-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/librechat-operator /librechat-operator
USER 65532:65532
ENTRYPOINT ["/librechat-operator"]
CMD ["run"]
