# Lastra Chat: `docker build -t lastra-chat .` then
#   docker run -d -p 8000:8000 -v lastra-data:/data -e LASTRA_SECRET=... lastra-chat
# See README.md ("Docker") and docs/operations.md.

# ---- build: install the package and its dependencies into a virtualenv -------------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/lastra
ENV PATH=/opt/lastra/bin:$PATH

WORKDIR /src
# Dependencies from the committed lock only (exact versions, hashes checked), then the
# package itself without dependencies: the image runs what the test suite ran.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/runtime.txt
# README.md is part of the package metadata (pyproject's `readme`).
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
# The installed package imports outside the source tree (no `app/` to shadow it).
WORKDIR /
RUN python -c "import app.main, app.bots.providers.offline"

# ---- runtime: the virtualenv, a non-root user, a data volume ----------------------------------
FROM python:3.11-slim

ENV PATH=/opt/lastra/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LASTRA_HOST=0.0.0.0 \
    LASTRA_PORT=8000 \
    LASTRA_DATA_DIR=/data

RUN groupadd --system --gid 10001 lastra \
 && useradd --system --uid 10001 --gid lastra --home-dir /home/lastra --create-home \
      --shell /usr/sbin/nologin lastra \
 && mkdir -p /data \
 && chown lastra:lastra /data

COPY --from=build /opt/lastra /opt/lastra

# The working directory must not contain an `app/` folder (it would shadow the installed
# package); a `.env` mounted here is read at startup.
WORKDIR /home/lastra
USER 10001:10001

VOLUME /data
EXPOSE 8000

# No curl in the slim image: ask /healthz with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('LASTRA_PORT', '8000'); sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=4).status == 200 else 1)"]

# python -m app takes --host/--port, defaulting to LASTRA_HOST/LASTRA_PORT.
CMD ["python", "-m", "app"]
