# Herald in one image; every role runs from it with a different command.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p herald

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/herald /usr/local/bin/herald
WORKDIR /var/lib/herald
EXPOSE 8080
ENTRYPOINT ["herald"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
