# syntax=docker/dockerfile:1
# 2api gateway image: `docker build -t 2api .` then
#   docker run --rm -p 8080:8080 --env-file .env 2api          (SQLite + chDB in /data)
# or docker compose (docker-compose.yml): PostgreSQL, Redis, ClickHouse, worker, dashboards.
# The same image runs every role; the command picks it (serve, analytics run, dashboards).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtualenv with the project and its dependencies ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# The application runs from its source tree (migrations/ and dashboards/ are read
# from beside the packages), installed in place into the virtualenv.
COPY pyproject.toml README.md ./
COPY adapters/ adapters/
COPY analytics/ analytics/
COPY dashboards/ dashboards/
COPY gateway/ gateway/
COPY ledger/ ledger/
COPY migrations/ migrations/
COPY simulator/ simulator/
COPY docs/openapi.yaml docs/openapi.yaml
RUN pip install -e . && python -m compileall -q /app

# -- runtime: slim, non-root, the virtualenv and the source tree only ---------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 twoapi \
 && useradd --system --uid 10001 --gid twoapi --home-dir /app --no-create-home --shell /usr/sbin/nologin twoapi \
 && mkdir -p /data && chown twoapi:twoapi /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TWOAPI_DATA_DIR=/data \
    TWOAPI_HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app
USER twoapi:twoapi
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8080'), timeout=2)"]
# Migrations first (idempotent), then the gateway in the foreground (exec: it gets the signals).
CMD ["sh", "-c", "twoapi migrate && exec twoapi serve"]
