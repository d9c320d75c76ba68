# rtba worker / producer / API image. The local stack (`rtba stack`) is not used in
# containers: docker-compose.yml provides Kafka and Redis as services.
FROM python:3.11.11-slim
# rtba runs as an unprivileged user of its own (uid 10001, above any the base image or a
# host's first users take); RTBA_HOME is the only place it writes.
RUN groupadd --system --gid 10001 rtba \
 && useradd --system --uid 10001 --gid rtba --home-dir /var/lib/rtba --create-home \
      --shell /usr/sbin/nologin rtba
WORKDIR /app
# Every package pinned with its hashes: pip refuses a file whose hash is not in the lock,
# and a dependency the lock does not name (requirements.lock, docs/security.md).
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY online_models ./online_models
COPY producers ./producers
COPY launcher ./launcher
# rtba itself, from these files only: its dependencies and build backend are installed above.
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
# The code stays root's and read-only to rtba; its home is its own.
ENV RTBA_HOME=/var/lib/rtba HOME=/var/lib/rtba
USER rtba:rtba
ENTRYPOINT ["rtba"]
CMD ["worker"]
