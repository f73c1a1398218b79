# Veilpost relay image: Daphne serving the Django Channels relay (REST, WebSocket, static files).
#
# NOTE: written on a machine without a Docker engine, so this file has not been built. Its
# Python, pip and npm steps were run by hand in a clean copy of the repository.
#
#   docker build -t veilpost-relay .
#   docker run -p 8000:8000 -v veilpost-data:/app/db veilpost-relay
#
# Defaults: one process, SQLite and the secret key in the /app/db volume, Channels' in-memory
# layer. Scale-out: set DATABASE_URL (PostgreSQL), REDIS_URL and one VEILPOST_SECRET_KEY shared
# by every node. Set VEILPOST_ALLOWED_HOSTS to the public host name; terminate TLS in front.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Node.js and npm only install the pinned Pyodide runtime from package-lock.json.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 veilpost \
    && useradd --system --uid 10001 --gid veilpost --home-dir /app --no-create-home veilpost

WORKDIR /app

# Pyodide from npm (node_modules/pyodide is served as /static/pyodide/).
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

COPY . .

# The relay and veilpost[native] (pyproject.toml), then the veilpost wheel for the browser.
RUN pip install . \
    && pip wheel --no-deps ./client_wasm -w static/wasm/

ENV VEILPOST_DEBUG=0 \
    VEILPOST_SECRET_KEY_FILE=/app/db/secret-key \
    VEILPOST_SERVE_STATIC=1

# collectstatic reads the settings, which need some secret key; this one is used for nothing else.
RUN VEILPOST_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && mkdir -p db \
    && chown veilpost:veilpost db

USER 10001:10001
VOLUME ["/app/db"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4)"]

CMD ["sh", "-c", "python manage.py migrate --noinput && exec daphne -b 0.0.0.0 -p 8000 webapp.asgi:application"]
