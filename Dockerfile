# rtba worker / producer image. The local stack (`rtba stack`) is not used in
# containers: docker-compose.yml provides Kafka and Redis as services.
FROM python:3.11.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY online_models ./online_models
COPY producers ./producers
COPY launcher ./launcher
RUN pip install --no-cache-dir .
ENV RTBA_HOME=/var/lib/rtba
ENTRYPOINT ["rtba"]
CMD ["worker"]
