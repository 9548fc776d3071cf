FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SHAOZI_HOST=0.0.0.0 SHAOZI_PORT=8080 SHAOZI_DATA_DIR=/var/lib/shaozi

WORKDIR /app
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
COPY channels ./channels
COPY contacts ./contacts
COPY config ./config
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /var/lib/shaozi --create-home shaozi

USER shaozi
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SHAOZI_PORT', '8080'), timeout=2)"
CMD ["shaozi", "serve"]
