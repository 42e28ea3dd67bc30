# syntax=docker/dockerfile:1
# lotse: one static binary on a distroless, non-root base. The :debug variant
# carries a busybox shell, which GitLab's docker executor needs to run a job's
# script (use it with `entrypoint: [""]`, as with kaniko's debug image).
FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV GOEXPERIMENT=jsonv2 CGO_ENABLED=0
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w -X main.version=${VERSION}" -o /out/lotse ./cmd/lotse && \
    go build -ldflags "-s -w -X main.version=${VERSION}" -o /out/lotsed ./cmd/lotsed && \
    mkdir -p /out/data

# lotsed: docker build --target lotsed . (listens on :8080; SQLite under /var/lib/lotsed)
FROM gcr.io/distroless/static-debian12:nonroot AS lotsed
COPY --from=build /out/lotsed /usr/local/bin/lotsed
COPY --from=build --chown=65532:65532 /out/data /var/lib/lotsed
ENV LOTSE_DATABASE_URL=/var/lib/lotsed/lotsed.db
VOLUME /var/lib/lotsed
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/lotsed"]

# lotse, the default target: the image the CI/CD components run.
FROM gcr.io/distroless/static-debian12:debug-nonroot AS lotse
COPY --from=build /out/lotse /usr/local/bin/lotse
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/lotse"]
