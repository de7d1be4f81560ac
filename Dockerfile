# The ticketq image: one image for every role; the command picks it
# (`ticketq worker`, `ticketq fake-api ...`). See docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package needs: no tests, no local .venv, no caches in the image.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker/ worker/
COPY producers/ producers/
COPY ops/ ops/

RUN pip install . \
    && cd / && rm -rf /src \
    && useradd --system --user-group --uid 10001 --create-home --home-dir /home/ticketq \
       --shell /usr/sbin/nologin ticketq

USER ticketq
WORKDIR /home/ticketq

EXPOSE 8080
CMD ["ticketq", "worker"]
