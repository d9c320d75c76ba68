"""A secured stack: Redis that lets in an admin ACL user and a user per role (the worker,
the API), each allowed only its commands and its namespace's keys, and Kafka whose
clients must log in with SASL/PLAIN over TLS (SASL_SSL, a CA of the stack's own) on the
one listener that serves clients. `rtba stack up` starts both
from the same settings the pipeline uses, with the passwords given as files (container
secrets); the pipeline works through them, each process as its role, fails in one line
without them, and never writes a password out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError
from redis.exceptions import NoPermissionError, ResponseError

from streams.settings import Settings
from streams.state.store import connect
from tests.conftest import REPO, WorkerProcess, assert_states_match_batch, wait_for_records
from tests.integration.test_end_to_end import known_events

pytestmark = pytest.mark.integration

REDIS_PASSWORD = "redis-Secret-4242"
KAFKA_PASSWORD = "kafka-Secret-4242"
ROLE_PASSWORDS = {"worker": "worker-Secret-4242", "api": "api-Secret-4242"}
ROLE_USERS = {"worker": "rtba-worker", "api": "rtba-api"}  # the settings' default names
SECRETS = (REDIS_PASSWORD, KAFKA_PASSWORD, *ROLE_PASSWORDS.values())
STACK_VARIABLES = ("KAFKA_BOOTSTRAP", "REDIS_URL", "RTBA_NAMESPACE", "RTBA_REDIS_CLUSTER")


def rtba(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a password was written out: {text[-500:]}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """The environment of rtba processes on a secured stack of this module's own."""
    home = tmp_path_factory.mktemp("secured")
    (home / "redis.pw").write_text(REDIS_PASSWORD + "\n")
    (home / "kafka.pw").write_text(KAFKA_PASSWORD + "\n")
    for role, password in ROLE_PASSWORDS.items():
        (home / f"{role}.pw").write_text(password + "\n")
    env = {k: v for k, v in os.environ.items() if k not in STACK_VARIABLES}
    env.update({
        "RTBA_HOME": str(home / "home"), "RTBA_NAMESPACE": "secured", "RTBA_PARTITIONS": "2",
        "RTBA_BATCH_WITHIN_S": "0.1",
        "RTBA_REDIS_USERNAME": "rtba", "RTBA_REDIS_PASSWORD_FILE": str(home / "redis.pw"),
        "RTBA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RTBA_KAFKA_SASL_USERNAME": "rtba",
        "RTBA_KAFKA_SASL_PASSWORD_FILE": str(home / "kafka.pw"),
        "RTBA_REDIS_WORKER_PASSWORD_FILE": str(home / "worker.pw"),
        "RTBA_REDIS_API_PASSWORD_FILE": str(home / "api.pw"),
    })  # fmt: skip
    up = rtba(env, "stack", "up", "--json")
    assert up.returncode == 0, up.stderr
    assert_no_secret(up.stdout, up.stderr)
    info = json.loads(up.stdout)
    assert info["kafka_security_protocol"] == "SASL_SSL" and info["kafka_ssl_ca_file"]
    env.update(KAFKA_BOOTSTRAP=info["kafka_bootstrap"], REDIS_URL=info["redis_url"])
    try:
        yield env
    finally:
        env.pop("KAFKA_BOOTSTRAP"), env.pop("REDIS_URL")
        rtba(env, "stack", "down")


def stack_state(env: dict) -> dict:
    return json.loads((Path(env["RTBA_HOME"]) / "stack.json").read_text())


def as_role(env: dict, role: str) -> dict:
    """The environment of a process that logs in to Redis as ``role``, knowing no other
    password."""
    role_env = {k: v for k, v in env.items() if not k.startswith(("RTBA_REDIS_WORKER_",
                                                                  "RTBA_REDIS_API_"))}  # fmt: skip
    home = os.path.dirname(env["RTBA_REDIS_PASSWORD_FILE"])
    role_env.update(RTBA_REDIS_USERNAME=ROLE_USERS[role],
                    RTBA_REDIS_PASSWORD_FILE=os.path.join(home, f"{role}.pw"))  # fmt: skip
    return role_env


def sasl(env: dict) -> dict:
    """kafka-python's SASL_SSL options, written out by the test (not Settings.kafka_options):
    the CA is the one `rtba stack up` made, which its state file names."""
    return {"bootstrap_servers": env["KAFKA_BOOTSTRAP"], "security_protocol": "SASL_SSL",
            "ssl_cafile": stack_state(env)["kafka_ssl_ca_file"], "sasl_mechanism": "PLAIN",
            "sasl_plain_username": "rtba", "sasl_plain_password": KAFKA_PASSWORD}  # fmt: skip


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (its socket inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def plaintext_client_served(port: int) -> bool:
    """Whether a PLAINTEXT Kafka client on ``port`` gets the topic list."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=2000,
                                 bootstrap_timeout_ms=2000)  # fmt: skip
    except KafkaTimeoutError:  # (not a configuration error: that one is raised)
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


def read_topic(env: dict, topic: str) -> list:
    consumer = KafkaConsumer(**sasl(env), enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends, records = consumer.end_offsets(parts), []
    while any(consumer.position(p) < ends[p] for p in parts):
        for batch in consumer.poll(timeout_ms=1000).values():
            records += batch
    consumer.close()
    return records


def read_through_the_api_as_its_role(env: dict, customer: dict) -> None:
    """Every read route of `rtba api` logged in as the API role (its Kafka feed over
    SASL_SSL), and a dashboard sample written to its own keys."""
    import time

    from fastapi.testclient import TestClient

    from streams.api.app import create_api

    settings = Settings.from_env({**as_role(env, "api"), "RTBA_DASHBOARD_SAMPLE_S": "0.2"})
    with TestClient(create_api(settings), base_url="http://127.0.0.1") as api:
        paths = ["/ready", "/segments", "/clusters", "/customers", "/models", "/audiences",
                 f"/customers/{customer['customer_id']}", "/events", "/metrics",
                 f"/segments/{customer['segment']}/members", "/dlq"]  # fmt: skip
        for path in paths:
            answer = api.get(path)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        # erase is the admin role's: with the admin token but the API's Redis login, a
        # clear 403 (not a 500), and the customer is still there
        token = "admin-token-of-the-test-42"
        settings = Settings.from_env({**as_role(env, "api"), "RTBA_API_ADMIN_TOKEN": token})
        with TestClient(create_api(settings), base_url="http://127.0.0.1") as admin:
            refused = admin.delete(f"/customers/{customer['customer_id']}",
                                   headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert refused.status_code == 403 and "admin login" in refused.json()["detail"]
        assert api.get(f"/customers/{customer['customer_id']}").status_code == 200
        deadline = time.monotonic() + 10
        while not api.get("/dashboard/history").json().get("samples"):
            assert time.monotonic() < deadline, "no dashboard sample written as the API role"
            time.sleep(0.2)


def test_the_pipeline_works_through_the_acl_users_and_the_sasl_ssl_listener(secured, tmp_path):
    events = known_events(seed=11, customers=12)
    worker = WorkerProcess(as_role(secured, "worker"), tmp_path / "worker.log").start()
    try:
        producer = KafkaProducer(**sasl(secured), acks="all")
        for event in events:
            producer.send("secured.events", key=event["customer_id"].encode(),
                          value=json.dumps(event).encode())  # fmt: skip
        producer.flush()
        producer.close()
        settings = Settings.from_env(secured)
        client = connect(secured["REDIS_URL"], username="rtba", password=REDIS_PASSWORD)
        wait_for_records(client, settings, len(events), worker)
        client.close()
        assert_states_match_batch(settings, events)
        changes = read_topic(secured, "secured.segment-changes")
        assert {json.loads(r.value)["customer_id"] for r in changes} == {
            e["customer_id"] for e in events if e["type"] == "purchase"
        }
        profile = rtba(as_role(secured, "api"), "profile", "--all", "--json")
        assert profile.returncode == 0, profile.stderr
        assert len(profile.stdout.splitlines()) == 12
        first = json.loads(profile.stdout.splitlines()[0])
        profile_id = first["customer_id"]
        read_through_the_api_as_its_role(secured, first)
        status = rtba(secured, "stack", "status", "--json")
        assert json.loads(status.stdout)["kafka"] == "up" == json.loads(status.stdout)["redis"]
        admin = connect(secured["REDIS_URL"], username="rtba", password=REDIS_PASSWORD)
        denied = {(entry["username"], entry["object"]) for entry in admin.acl_log()}
        admin.close()
        # Nothing the pipeline or the API did was refused, but the worker's CONFIG GET
        # appendonly (the durability warning, skipped when a server refuses it, as managed
        # services do) and the erase tried on purpose as the API role (its 403), with the
        # audit entry of that failed attempt (the read role writes no audit: the log line
        # says so, and the erase's own refusal is what the caller gets).
        erase_tried = {("rtba-api", f"{secured['RTBA_NAMESPACE']}:c:{{{profile_id}}}"),
                       ("rtba-api", "hsetnx")}  # fmt: skip
        assert denied <= {("rtba-worker", "config|get"), *erase_tried}, denied
    finally:
        worker.stop()
    assert_no_secret(worker.log_path.read_text(), profile.stderr, status.stdout)


def test_kafka_serves_clients_only_through_sasl_ssl(secured):
    """No PLAINTEXT listener for clients: the broker listens on the SASL_SSL port and its
    KRaft controller port, and a PLAINTEXT client gets nothing from either."""
    state = stack_state(secured)
    client_port = int(secured["KAFKA_BOOTSTRAP"].rsplit(":", 1)[1])
    assert listening_ports(state["kafka_pid"]) == {client_port, state["kafka_controller_port"]}
    for port in (client_port, state["kafka_controller_port"]):
        assert not plaintext_client_served(port), port
    admin = KafkaAdminClient(**sasl(secured))  # the same port, with TLS and the login
    assert "secured.events" in admin.list_topics()
    admin.close()


def test_each_redis_role_may_run_its_commands_on_its_namespace_only(secured):
    def login(role: str):
        return connect(secured["REDIS_URL"], username=ROLE_USERS[role],
                       password=ROLE_PASSWORDS[role])  # fmt: skip

    refused = NoPermissionError
    worker, api = login("worker"), login("api")
    state = "secured:c:{c-acl}"
    try:
        for command in (["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "requirepass"],
                        ["CONFIG", "SET", "appendonly", "no"], ["KEYS", "*"],
                        ["SCAN", "0"], ["DEBUG", "SLEEP", "0"], ["SHUTDOWN", "NOSAVE"],
                        ["ACL", "LIST"], ["MODULE", "LIST"], ["MONITOR"]):  # fmt: skip
            for client in (worker, api):  # (DEBUG is off in redis-server's own config too)
                with pytest.raises(refused if command[0] != "DEBUG" else ResponseError):
                    client.execute_command(*command)
        assert worker.hset(state, "x", 1) == 1  # the worker writes state...
        with pytest.raises(refused):  # ...of its namespace only
            worker.set("other-namespace:watermark", 1)
        assert api.hget(state, "x") == b"1"  # the API reads state...
        for write in (lambda: api.hset(state, "x", 2), lambda: api.delete(state),
                      lambda: api.set("secured:watermark", 0),
                      lambda: api.eval("return redis.call('DEL', KEYS[1])", 1, state)):  # fmt: skip
            with pytest.raises(refused):  # ...and cannot change it
                write()
        assert api.set("secured:dashboard:lease", "t", px=1000)  # its own keys, it can
        assert worker.hget(state, "x") == b"1"
    finally:
        worker.delete(state)
        worker.close(), api.close()


@pytest.mark.parametrize("login", [
    {"RTBA_REDIS_PASSWORD_FILE": ""},  # no password: the default user is off
    {"RTBA_REDIS_PASSWORD_FILE": "", "RTBA_REDIS_PASSWORD": "not-the-password"},
])  # fmt: skip
def test_without_the_redis_login_commands_stop_in_one_line(secured, login):
    for command in (["worker"], ["profile", "--all"]):
        refused = rtba({**secured, **login}, *command, timeout=60)
        assert refused.returncode == 2, refused.stderr
        line = refused.stderr.strip()
        assert "\n" not in line and "RTBA_REDIS_PASSWORD" in line, line
        assert "not-the-password" not in line
        assert_no_secret(line)


def test_a_wrong_password_in_redis_url_query_is_a_refused_login_never_shown(secured):
    url = f"{secured['REDIS_URL']}?password=not-the-password"
    refused = rtba({**secured, "REDIS_URL": url, "RTBA_REDIS_PASSWORD_FILE": ""}, "stats")
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.strip()
    assert "\n" not in line and "refused the login of user 'rtba'" in line, line
    assert "not-the-password" not in line and "password=***" in line, line


@pytest.mark.parametrize("login, command", [
    ({"RTBA_KAFKA_SECURITY_PROTOCOL": "", "RTBA_KAFKA_SASL_USERNAME": "",
      "RTBA_KAFKA_SASL_PASSWORD_FILE": ""},  # PLAINTEXT to a SASL listener
     ["produce", "synthetic", "--customers", "1", "--events", "1"]),
    ({"RTBA_KAFKA_SASL_PASSWORD_FILE": "", "RTBA_KAFKA_SASL_PASSWORD": "not-the-password"},
     ["worker"]),
])  # fmt: skip
def test_without_the_sasl_login_kafka_commands_stop_in_one_line(secured, login, command):
    refused = rtba({**secured, **login}, *command, timeout=60)
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.strip()
    assert "\n" not in line and "RTBA_KAFKA_SECURITY_PROTOCOL" in line, line
    assert "not-the-password" not in line


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """A redis-server speaking TLS only, with a certificate signed by a CA of the test's
    own (openssl), and the CA's file: {url, ca}."""
    import shutil
    import time

    from launcher.stack import free_port

    where = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=rtba test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2",
            "-extfile", "san.ext")  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", "0", "--tls-port", str(port),
         "--bind", "127.0.0.1", "--tls-cert-file", "server.pem", "--tls-key-file",
         "server.key", "--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(where)],
        cwd=where, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url, ca = f"rediss://127.0.0.1:{port}/0", str(where / "ca.pem")
    deadline = time.monotonic() + 20
    while True:
        try:
            connect(url, ssl_ca_certs=ca).ping()
            break
        except Exception:
            assert time.monotonic() < deadline and server.poll() is None, "no TLS redis"
            time.sleep(0.2)
    try:
        yield {"url": url, "ca": ca}
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_pipeline_works_through_redis_over_tls(tls_redis, rtba_env, tmp_path):
    env = {**rtba_env, "REDIS_URL": tls_redis["url"], "RTBA_REDIS_TLS_CA_FILE": tls_redis["ca"]}
    events = known_events(seed=12, customers=5)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        producer = KafkaProducer(bootstrap_servers=env["KAFKA_BOOTSTRAP"], acks="all")
        for event in events:
            producer.send(f"{env['RTBA_NAMESPACE']}.events", key=event["customer_id"].encode(),
                          value=json.dumps(event).encode())  # fmt: skip
        producer.close()
        settings = Settings.from_env(env)
        client = connect(tls_redis["url"], ssl_ca_certs=tls_redis["ca"])
        wait_for_records(client, settings, len(events), worker)
        client.close()
        assert_states_match_batch(settings, events)
    finally:
        worker.stop()
    untrusted = rtba({**env, "RTBA_REDIS_TLS_CA_FILE": ""}, "stats")  # the system's CAs
    assert untrusted.returncode == 2, untrusted.stderr
    line = untrusted.stderr.strip()
    assert "\n" not in line and "TLS" in line and "RTBA_REDIS_TLS_CA_FILE" in line, line
