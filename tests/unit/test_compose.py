"""docker-compose.yml is valid for the Compose CLI and wires the settings rtba reads."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The compose file asks for the API's token (any 16+ characters validate it) and for the
# file holding Redis's password (validating reads no file).
ENV = {**os.environ, "RTBA_API_TOKEN": "compose-test-token-0123",
       "RTBA_REDIS_PASSWORD_FILE": "/run/secrets/compose-test-redis-password"}  # fmt: skip


def compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def compose():
    cli = compose_cli()
    if cli is None:
        pytest.skip(
            "no docker compose CLI on this machine (make test installs one with the docker client)"
        )
    return cli


def test_compose_file_is_valid(compose):
    result = subprocess.run([*compose, "-f", "docker-compose.yml", "config", "-q"],
                            cwd=ROOT, capture_output=True, text=True, env=ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_run_the_api_without_its_token(compose):
    env = {k: v for k, v in ENV.items() if k != "RTBA_API_TOKEN"}
    result = subprocess.run([*compose, "-f", "docker-compose.yml", "config", "-q"],
                            cwd=ROOT, capture_output=True, text=True, env=env)  # fmt: skip
    assert result.returncode != 0 and "set RTBA_API_TOKEN" in result.stderr, result.stderr


def test_compose_runs_kafka_redis_worker_api_and_producer(compose):
    result = subprocess.run([*compose, "-f", "docker-compose.yml", "config", "--services"],
                            cwd=ROOT, capture_output=True, text=True, check=True,
                            env=ENV)  # fmt: skip
    assert set(result.stdout.split()) == {"kafka", "redis", "worker", "api", "producer"}


def test_the_api_port_is_published_on_the_host_loopback_only(compose):
    import re

    result = subprocess.run([*compose, "-f", "docker-compose.yml", "config"],
                            cwd=ROOT, capture_output=True, text=True, check=True,
                            env=ENV)  # fmt: skip
    api = result.stdout.split("\n  api:\n")[1]
    api = re.split(r"\n  \S", api)[0]  # up to the next service
    ports = api.split("ports:")[1]
    # Compose 1.x prints 127.0.0.1:8000:8000/tcp; Compose 2 the long form
    short = re.search(r"- (\S+):8000:8000", ports)
    host_ip = short.group(1) if short else re.search(r"host_ip: (\S+)", ports).group(1)
    assert host_ip == "127.0.0.1"
    assert "0.0.0.0" in api and "RTBA_API_TOKEN: compose-test-token-0123" in api
    assert "healthcheck:" in api


def test_compose_sets_the_environment_rtba_reads():
    """Every RTBA_ variable the compose file sets is a setting (a typo is silently ignored),
    and the connection variables are among them."""
    import re

    from streams.settings import Settings, env_name

    text = (ROOT / "docker-compose.yml").read_text()
    known = {env_name(field) for field in Settings.model_fields}
    given = set(re.findall(r"^\s+(RTBA_[A-Z_]+):", text, re.MULTILINE))
    assert {"RTBA_NAMESPACE", "RTBA_PARTITIONS"} <= given <= known, given - known
    for name in ("KAFKA_BOOTSTRAP", "REDIS_URL"):  # the Kafka image's own KAFKA_* are not ours
        assert re.search(rf"^\s+{name}:", text, re.MULTILINE) and name in known


def test_images_are_pinned_and_kafka_keeps_its_data_on_its_volume():
    import re

    text = (ROOT / "docker-compose.yml").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    images = re.findall(r"^\s+image:\s*(\S+)", text, re.MULTILINE)
    images += re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert len(images) == 3
    for image in images:  # a full version, not a moving tag such as redis:7 or latest
        assert re.search(r":\d+\.\d+\.\d+", image), image
    log_dirs = re.search(r"KAFKA_LOG_DIRS:\s*(\S+)", text).group(1)
    assert f"kafka-data:{log_dirs}" in text  # the broker writes where the volume is
    for service in ("kafka", "redis", "worker", "api"):  # the next blank line ends a service
        block = text.split(f"\n  {service}:\n")[1].split("\n\n")[0]
        assert "healthcheck:" in block, service


def service_block(text: str, service: str) -> str:
    """A service's lines in docker-compose.yml, up to the next blank line."""
    return text.split(f"\n  {service}:\n")[1].split("\n\n")[0]


def test_redis_asks_for_the_password_of_the_secret_and_every_service_has_it():
    """Redis takes requirepass from a secret (no password in an argument, the image or
    REDIS_URL); every rtba service gets REDIS_URL without it and the secret's file."""
    import re

    text = (ROOT / "docker-compose.yml").read_text()
    redis = service_block(text, "redis")
    assert "requirepass" in redis and "/run/secrets/redis_password" in redis
    assert re.search(r"secrets: \[redis_password\]", redis)
    assert "REDISCLI_AUTH=" in redis.split("healthcheck:")[1]  # the check logs in too
    assert "--requirepass" not in redis  # an argument shows in ps
    env = text.split("x-rtba-env: &rtba-env\n")[1].split("\n\n")[0]
    url = re.search(r"REDIS_URL: (\S+)", env).group(1)
    assert "@" not in url and "password" not in url, url
    assert "RTBA_REDIS_PASSWORD_FILE: /run/secrets/redis_password" in env
    services = re.findall(r"^  ([a-z]+):\n    build: \.", text, re.MULTILINE)
    assert set(services) == {"worker", "api", "producer"}
    for service in services:
        block = service_block(text, service)
        assert "*rtba-env" in block and "secrets: [redis_password]" in block, service
    secrets = text.split("\nsecrets:\n")[1]
    assert re.search(r"redis_password:\n\s+file: \$\{RTBA_REDIS_PASSWORD_FILE:\?", secrets)


def test_compose_refuses_to_start_without_the_redis_password_file(compose):
    env = {k: v for k, v in ENV.items() if k != "RTBA_REDIS_PASSWORD_FILE"}
    result = subprocess.run([*compose, "-f", "docker-compose.yml", "config", "-q"],
                            cwd=ROOT, capture_output=True, text=True, env=env)  # fmt: skip
    assert result.returncode != 0 and "set RTBA_REDIS_PASSWORD_FILE" in result.stderr
