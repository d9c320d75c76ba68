"""The local stack: a real Apache Kafka broker (KRaft, from Maven Central jars)
and Debian's redis-server, both on 127.0.0.1, started and stopped by rtba.

State (ports, pids) is kept in RTBA_HOME/stack.json; data lives under RTBA_HOME
(git-ignored). Jars are cached under RTBA_CACHE (default .cache/ in the repo).
When KAFKA_BOOTSTRAP and REDIS_URL are both set, nothing is started: the stack
is the one they name.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis

from streams.processing.topics import admin_client, ensure_topics
from streams.settings import Settings, env_name, read_stack_state, redacted, stack_state_file
from streams.state import redis_client

REPO_ROOT = Path(__file__).resolve().parents[1]
INFRA = REPO_ROOT / "infra" / "kafka"


class StackError(RuntimeError):
    """A clear, user-facing reason the stack cannot start."""


def _say(message: str) -> None:
    print(f"[rtba stack] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Settings.from_env().cache


def kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", (INFRA / "pom.xml").read_text())
    assert match, "infra/kafka/pom.xml names no kafka.version"
    return match.group(1)


def kafka_jars() -> Path:
    return cache_dir() / f"kafka-{kafka_version()}" / "jars"


# -- install -------------------------------------------------------------------


def ensure_java() -> str:
    java = shutil.which("java")
    if not java:
        raise StackError("Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless")
    return java


def ensure_kafka_jars() -> Path:
    """Fetch the broker's jars from Maven Central once (cached)."""
    jars = kafka_jars()
    done = jars.parent / ".complete"
    if done.exists():
        return jars
    ensure_java()
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError("Maven is needed once to fetch the Kafka jars: apt-get install maven")
    _say(f"fetching Apache Kafka {kafka_version()} jars from Maven Central into {jars} ...")
    staging = jars.parent / "jars.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(INFRA / "pom.xml"), "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise StackError("fetching the Kafka jars from Maven Central failed:\n" + "\n".join(tail))
    shutil.rmtree(jars, ignore_errors=True)
    staging.rename(jars)
    done.touch()
    return jars


def ensure_redis_server() -> str:
    """Path of redis-server, installing Debian's package when missing (as root)."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(
            "redis-server is missing: install it (Debian: apt-get install redis-server)"
        )
    _say("installing redis-server with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise StackError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    # Debian starts its own service on 6379; rtba runs its own server, so leave that one alone.
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        raise StackError("apt-get installed redis-server but it is not on PATH")
    return found


def install() -> None:
    ensure_kafka_jars()
    ensure_redis_server()


# -- processes -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _choose_port(settings: Settings, field: str, previous: int | None) -> int:
    wanted = getattr(settings, field)
    if wanted:
        if not port_free(wanted):
            raise StackError(f"port {wanted} ({env_name(field)}) is already in use on 127.0.0.1")
        return wanted
    if previous and port_free(previous):
        return previous
    return free_port()


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie child still answers kill(0); look at its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def redis_healthy(url: str, **options) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2, **options).ping())
    except redis.exceptions.RedisError:
        return False


def _port_answers(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
            return True
    except (OSError, ValueError):
        return False


def kafka_healthy(bootstrap: str, timeout_s: float = 3.0, **security) -> bool:
    # A closed port answers at once; kafka-python would spend its whole bootstrap timeout on it.
    if not any(_port_answers(hp) for hp in bootstrap.split(",") if hp):
        return False
    try:
        admin = admin_client(bootstrap, timeout_s, **security)
    except Exception:
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()


def _wait(check, what: str, pid: int, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if not alive(pid):
            tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
            raise StackError(f"{what} exited during start-up; last log lines:\n" + "\n".join(tail))
        time.sleep(0.3)
    raise StackError(f"{what} did not become healthy within {timeout_s:.0f}s (log: {log})")


def start_redis(home: Path, port: int, fsync: str = "always",
                login: tuple[str | None, str] | None = None,
                roles: dict[str, tuple[str, str]] | None = None,
                namespace: str = "behavior") -> int:  # fmt: skip
    """redis-server on loopback with its append-only file fsynced as ``fsync`` says:
    ``always`` (the default, see docs/decisions.md: a write acknowledged to a worker is on
    disk before Kafka offsets move past it) or ``everysec``. With ``login`` (user, password)
    only that ACL user gets in (the default user when ``user`` is None), with every
    command; ``roles`` ({role: (user, password)}) adds a user per role, allowed what
    infra/redis/roles.toml grants that role on ``namespace``'s keys."""
    data = home / "redis"
    if login is None:
        return _redis_server(data, port, fsync)
    user, password = login
    acl = _private_file(data / "users.acl", _acl(user, password, roles or {}, namespace))
    return _redis_server(data, port, fsync, "--aclfile", str(acl), login=_login(login))


def _login(login: tuple[str | None, str]) -> dict:
    user, password = login
    return {"username": user, "password": password} if user else {"password": password}


ROLES_FILE = REPO_ROOT / "infra" / "redis" / "roles.toml"


def role_rules(role: str, namespace: str) -> str:
    """The ACL rules of ``role`` (admin, worker, api) on ``namespace``, as one
    ``ACL SETUSER`` rule list, from infra/redis/roles.toml."""
    import tomllib

    grant = tomllib.loads(ROLES_FILE.read_text())[role]
    rules = ["resetkeys", *grant["keys"], "resetchannels", *grant["channels"], "-@all",
             *grant["commands"]]  # fmt: skip
    return " ".join(rule.replace("{ns}", namespace) for rule in rules)


def _acl(user: str | None, password: str, roles: dict[str, tuple[str, str]],
         namespace: str) -> str:  # fmt: skip
    """An ACL file: ``user`` (the admin) may run every command on every key, each role's
    user what its role may; no one else gets in."""
    _no_space(password, "RTBA_REDIS_PASSWORD")
    admin = user or "default"
    lines = [] if admin == "default" else ["user default off"]
    lines.append(f"user {admin} on >{password} {role_rules('admin', namespace)}")
    for role, (name, secret) in sorted(roles.items()):
        variable = f"RTBA_REDIS_{role.upper()}"
        _no_space(secret, f"{variable}_PASSWORD")
        if name in (admin, *(n for r, (n, _) in roles.items() if r != role)):
            raise StackError(f"{variable}_USERNAME={name!r} is another user's name: "
                             "each role logs in as a user of its own")  # fmt: skip
        lines.append(f"user {name} on >{secret} {role_rules(role, namespace)}")
    return "\n".join(lines) + "\n"


def _no_space(password: str, variable: str) -> None:
    if any(c.isspace() for c in password):
        raise StackError(f"the local Redis takes a password without spaces ({variable})")


def _private_file(path: Path, text: str) -> Path:
    """``path`` holding ``text``, readable by this user only (it holds a secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)
    return path


def _redis_server(data: Path, port: int, fsync: str, *extra: str,
                  login: dict | None = None) -> int:  # fmt: skip
    binary = ensure_redis_server()
    data.mkdir(parents=True, exist_ok=True)
    log = data / "redis.log"
    cmd = [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
        "--appendonly", "yes", "--appendfsync", fsync, "--save", "",
        "--daemonize", "no", "--logfile", str(log), "--protected-mode", "yes",
        # due-index buckets stay compact listpacks up to ~8M customers (streams/state/due_index.py)
        "--zset-max-listpack-entries", "512", *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    _wait(lambda: redis_healthy(url, **(login or {})), "redis-server", proc.pid, log, 20)
    return proc.pid


CLUSTER_MASTERS = 3


def start_redis_cluster(home: Path, ports: list[int], bus_ports: list[int],
                        fsync: str = "always") -> list[int]:  # fmt: skip
    """A Redis Cluster of ``len(ports)`` masters (no replicas) on loopback, each an
    append-only redis-server as in :func:`start_redis`, with its cluster bus on the
    matching ``bus_ports`` entry (Redis's default, port + 10,000, may be taken or past
    65,535). A cluster formed before (its nodes files in RTBA_HOME, the same ports) comes
    back as it was; a new one is created with ``redis-cli --cluster create``, which
    spreads the 16,384 slots evenly."""
    pids = []
    for port, bus in zip(ports, bus_ports, strict=True):
        data = home / "redis-cluster" / str(port)
        pids.append(_redis_server(data, port, fsync, "--cluster-enabled", "yes",
                                  "--cluster-port", str(bus),
                                  "--cluster-config-file", "nodes.conf",
                                  "--cluster-node-timeout", "5000"))  # fmt: skip
    first = redis.Redis(host="127.0.0.1", port=ports[0], socket_timeout=2)
    try:
        if int(first.info("cluster").get("cluster_enabled", 0)) != 1:
            raise StackError(f"redis-server on port {ports[0]} did not start in cluster mode")
        if int(first.cluster("info")["cluster_slots_assigned"]) == 0:
            nodes = [f"127.0.0.1:{p}" for p in ports]
            proc = subprocess.run(
                [shutil.which("redis-cli") or "redis-cli", "--cluster", "create", *nodes,
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if proc.returncode != 0:
                raise StackError(f"redis-cli --cluster create failed:\n{proc.stdout[-2000:]}"
                                 f"{proc.stderr[-2000:]}")  # fmt: skip
        deadline = time.monotonic() + 30
        while not _cluster_ok(ports):
            if time.monotonic() > deadline:
                raise StackError(f"the Redis Cluster on ports {ports} did not reach state ok")
            time.sleep(0.3)
    finally:
        first.close()
    return pids


def _cluster_ok(ports: list[int]) -> bool:
    for port in ports:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        try:
            if client.cluster("info").get("cluster_state") != "ok":
                return False
        except redis.exceptions.RedisError:
            return False
        finally:
            client.close()
    return True


def _server_properties(data: Path, port: int, controller_port: int, partitions: int,
                       secured: Listener | None = None) -> str:  # fmt: skip
    """The broker's configuration. Unsecured, clients use PLAINTEXT on ``port``. Secured,
    the one client listener on ``port`` speaks ``secured.protocol`` (SASL_PLAINTEXT or
    SASL_SSL, PLAIN), the broker reaches itself through it too, and the only other
    listener is the KRaft CONTROLLER on loopback, which answers controller requests only:
    no PLAINTEXT listener serves clients."""
    protocol = secured.protocol if secured else "PLAINTEXT"
    listener = f"{protocol}://127.0.0.1:{port}"
    extra = ""
    if secured is not None:
        name = protocol.lower()
        quoted = _jaas_quoted(secured.password)
        extra = (
            "sasl.enabled.mechanisms=PLAIN\n"
            "sasl.mechanism.inter.broker.protocol=PLAIN\n"
            # the broker logs in to itself (inter-broker) as the same user
            f"listener.name.{name}.plain.sasl.jaas.config="
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{secured.user}" password="{quoted}" user_{secured.user}="{quoted}";\n'
        )
        if secured.tls is not None:  # PEM files: Kafka 4 reads them with no keytool step
            extra += (
                f"ssl.keystore.type=PEM\nssl.keystore.location={secured.tls.keystore}\n"
                f"ssl.truststore.type=PEM\nssl.truststore.location={secured.tls.ca}\n"
            )
    return f"""# written by rtba stack up
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners={listener},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners={listener}
controller.listener.names=CONTROLLER
inter.broker.listener.name={protocol}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,{protocol}:{protocol}
{extra}log.dirs={data}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
"""


def _jaas_quoted(password: str) -> str:
    if any(c in password for c in '"\\;') or any(c.isspace() for c in password):
        raise StackError(
            "the local Kafka takes a SASL password without quotes, backslashes, ';' or "
            "spaces (RTBA_KAFKA_SASL_PASSWORD)"
        )
    return password


@dataclass(frozen=True)
class BrokerTLS:
    """The local broker's PEM files: its CA's certificate, and its key and certificate."""

    ca: Path
    keystore: Path


@dataclass(frozen=True)
class Listener:
    """The secured client listener: SASL_PLAINTEXT or SASL_SSL, with one PLAIN user."""

    protocol: str
    user: str
    password: str
    tls: BrokerTLS | None = None

    def client_options(self) -> dict:
        """kafka-python's options to log in through it."""
        options = {"security_protocol": self.protocol, "sasl_mechanism": "PLAIN",
                   "sasl_plain_username": self.user,
                   "sasl_plain_password": self.password}  # fmt: skip
        if self.tls is not None:
            options["ssl_cafile"] = str(self.tls.ca)
        return options


def broker_tls(base: Path) -> BrokerTLS:
    """A CA of the stack's own and a certificate it signs for 127.0.0.1 and localhost,
    made once with openssl under ``base``/tls (kept: clients trust the same CA file
    across restarts). The private keys are readable by their owner only."""
    where = base / "tls"
    tls = BrokerTLS(ca=where / "ca.pem", keystore=where / "broker-keystore.pem")
    if tls.ca.exists() and tls.keystore.exists():
        return tls
    openssl = shutil.which("openssl")
    if not openssl:
        raise StackError("openssl is needed to make the local Kafka's TLS certificate for "
                         "SASL_SSL: apt-get install openssl")  # fmt: skip
    where.mkdir(parents=True, exist_ok=True)
    where.chmod(0o700)
    (where / "broker.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
         "ca.pem", "-days", "825", "-subj", "/CN=rtba local stack CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out",
         "broker.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "broker.pem", "-days", "825", "-extfile", "broker.ext"],
    ]  # fmt: skip
    for step in steps:
        proc = subprocess.run([openssl, *step], cwd=where, capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"openssl {step[0]} failed: {proc.stderr.strip()[-500:]}")
    # Kafka's PEM key store: the (PKCS#8, unencrypted) key, then the certificate
    keystore = (where / "broker.key").read_text() + (where / "broker.pem").read_text()
    _private_file(tls.keystore, keystore)
    for name in ("ca.key", "broker.key"):
        (where / name).chmod(0o600)
    return tls


def start_kafka(home: Path, port: int, controller_port: int, partitions: int,
                secured: Listener | None = None) -> int:  # fmt: skip
    """A one-node KRaft broker on loopback whose clients connect to ``port``: PLAINTEXT,
    or with ``secured`` its SASL listener alone."""
    java = ensure_java()
    jars = ensure_kafka_jars()
    base = home / "kafka"
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    props = base / "server.properties"
    _private_file(props, _server_properties(data, port, controller_port, partitions, secured))
    classpath = f"{jars}/*"
    if not (data / "meta.properties").exists():
        # Kafka wants its cluster id as a url-safe base64 UUID; one in 64 starts with "-",
        # which the option parser takes for an option unless it is joined with "=".
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
             f"--cluster-id={cluster_id}", "-c", str(props)],
            capture_output=True, text=True,
        )  # fmt: skip
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
    log = base / "server.log"
    out = open(base / "kafka.out", "ab")
    cmd = [
        java, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={INFRA / 'log4j2.yaml'}", f"-Drtba.kafka.logfile={log}",
        "-cp", classpath, "kafka.Kafka", str(props),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                            start_new_session=True)  # fmt: skip
    login = secured.client_options() if secured else {}
    _wait(lambda: kafka_healthy(f"127.0.0.1:{port}", **login), "Kafka", proc.pid,
          base / "kafka.out", 90)  # fmt: skip
    return proc.pid


def stop_pid(pid: int | None, timeout_s: float = 30.0) -> None:
    if not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# -- the commands ------------------------------------------------------------------


def external(settings: Settings) -> bool:
    return bool(os.environ.get("KAFKA_BOOTSTRAP") and os.environ.get("REDIS_URL"))


def status(settings: Settings) -> dict:
    state = read_stack_state(settings.home)
    managed = not external(settings) and bool(state)
    security, login = settings.kafka_options(), settings.redis_options()
    return {
        "kafka_bootstrap": settings.kafka_bootstrap,
        "kafka_security_protocol": settings.kafka_security_protocol,
        "kafka_ssl_ca_file": settings.kafka_ssl_ca_file and str(settings.kafka_ssl_ca_file),
        "redis_url": settings.redis_url,
        "namespace": settings.namespace,
        "managed": managed,
        "kafka": "up" if kafka_healthy(settings.kafka_bootstrap, **security) else "down",
        "redis": "up" if redis_healthy(settings.redis_url, **login) else "down",
        "kafka_pid": state.get("kafka_pid") if managed else None,
        "redis_pid": state.get("redis_pid") if managed else None,
        "redis_cluster_pids": state.get("redis_cluster_pids") if managed else None,
        "redis_cluster": redis_client.is_cluster(settings.redis_url, **login),
        "home": str(settings.home.resolve()),
    }


def up(settings: Settings) -> dict:
    """Start (or reuse) the stack, create the namespace's topics, return its status."""
    started = time.monotonic()
    if external(settings):
        if not redis_healthy(settings.redis_url, **settings.redis_options()):
            raise StackError(f"REDIS_URL={redacted(settings.redis_url)} does not answer PING")
        ensure_topics(settings)
        _say(f"using the external stack: {settings.kafka_bootstrap}, "
             f"{redacted(settings.redis_url)}")  # fmt: skip
        return status(settings)
    home = settings.home.resolve()  # redis-server chdirs to its --dir: paths must be absolute
    home.mkdir(parents=True, exist_ok=True)
    state = read_stack_state(home)
    password = settings.secret("redis_password")
    login = (settings.redis_username, password) if password else None
    roles = _role_logins(settings)
    if roles and not login:
        raise StackError("the Redis role users need the admin's login too: set "
                         "RTBA_REDIS_USERNAME and RTBA_REDIS_PASSWORD (or ..._FILE)")  # fmt: skip
    if settings.redis_cluster:
        if login:
            raise StackError("the local Redis Cluster has no login: unset RTBA_REDIS_PASSWORD "
                             "or RTBA_REDIS_CLUSTER")  # fmt: skip
        _cluster_up(home, state, settings.redis_fsync)
    else:
        for pid in state.pop("redis_cluster_pids", None) or []:  # the other kind was up
            stop_pid(pid)
        options = settings.redis_options()
        if not (alive(state.get("redis_pid"))
                and redis_healthy(state.get("redis_url", ""), **options)):  # fmt: skip
            stop_pid(state.get("redis_pid"))  # up with another login: restarted with this one
            port = _choose_port(settings, "redis_port", state.get("redis_port"))
            state.update(redis_port=port, redis_url=f"redis://127.0.0.1:{port}/0")
            state["redis_pid"] = start_redis(home, port, settings.redis_fsync, login, roles,
                                             settings.namespace)  # fmt: skip
            guard = "ACL login" if login else "no login"
            if roles:
                guard += " and users " + ", ".join(f"{n} ({r})" for r, (n, _) in roles.items())
            _say(f"redis-server up on 127.0.0.1:{port} ({guard}; pid {state['redis_pid']})")
        elif login:  # up already: its users are this call's (a role added, a password changed)
            _reload_acl(home, state["redis_url"], login, roles, settings.namespace)
    secured = _kafka_listener(settings, home)
    login = secured.client_options() if secured else {}
    if not (alive(state.get("kafka_pid"))
            and kafka_healthy(state.get("kafka_bootstrap", ""), **login)):  # fmt: skip
        stop_pid(state.get("kafka_pid"))  # up with another protocol: restarted with this one
        port = _choose_port(settings, "kafka_port", state.get("kafka_port"))
        cport = _choose_port(settings, "kafka_controller_port", state.get("kafka_controller_port"))
        if cport == port:
            cport = free_port()
        state.update(kafka_port=port, kafka_controller_port=cport,
                     kafka_bootstrap=f"127.0.0.1:{port}")  # fmt: skip
        state["kafka_pid"] = start_kafka(home, port, cport, settings.partitions, secured)
        guard = f"{secured.protocol} with SASL/PLAIN only" if secured else "PLAINTEXT"
        _say(f"Kafka {kafka_version()} (KRaft) up on 127.0.0.1:{port} ({guard}; "
             f"pid {state['kafka_pid']})")  # fmt: skip
    state["kafka_security_protocol"] = secured.protocol if secured else "PLAINTEXT"
    # clients of this stack trust its CA with no setting (Settings.from_env reads it here)
    state["kafka_ssl_ca_file"] = str(secured.tls.ca) if secured and secured.tls else None
    stack_state_file(home).write_text(json.dumps(state, indent=2))
    # The caller's settings (its namespace: the topics to create), with the addresses of
    # what was just started unless the environment names others.
    started_at = {
        k: state[k]
        for k in ("kafka_bootstrap", "redis_url", "kafka_ssl_ca_file")
        if state.get(k) and not os.environ.get(env_name(k))
    }
    resolved = settings.model_copy(update={**started_at, "home": home})
    ensure_topics(resolved)
    _say(f"stack ready in {time.monotonic() - started:.1f}s")
    return status(resolved)


def _kafka_listener(settings: Settings, home: Path) -> Listener | None:
    """The secured client listener the settings ask of the local broker (None: PLAINTEXT),
    its TLS files made when SASL_SSL wants them."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol not in ("SASL_PLAINTEXT", "SASL_SSL"):
        raise StackError(f"the local Kafka speaks PLAINTEXT, SASL_PLAINTEXT or SASL_SSL, not "
                         f"{protocol} (RTBA_KAFKA_SECURITY_PROTOCOL)")  # fmt: skip
    if settings.kafka_sasl_mechanism != "PLAIN":
        raise StackError(f"the local Kafka's SASL mechanism is PLAIN, not "
                         f"{settings.kafka_sasl_mechanism} "
                         "(RTBA_KAFKA_SASL_MECHANISM)")  # fmt: skip
    tls = broker_tls(home / "kafka") if protocol == "SASL_SSL" else None
    return Listener(protocol, settings.kafka_sasl_username,
                    settings.secret("kafka_sasl_password"), tls)  # fmt: skip


def _role_logins(settings: Settings) -> dict[str, tuple[str, str]]:
    """{role: (user, password)} of the roles whose password is set."""
    found = {}
    for role in ("worker", "api"):
        password = settings.secret(f"redis_{role}_password")
        if password:
            found[role] = (getattr(settings, f"redis_{role}_username"), password)
    return found


def _reload_acl(home: Path, url: str, login: tuple[str | None, str],
                roles: dict[str, tuple[str, str]], namespace: str) -> None:  # fmt: skip
    """Rewrite the running server's ACL file and have it read it again (ACL LOAD)."""
    _private_file(home / "redis" / "users.acl", _acl(*login, roles, namespace))
    client = redis.Redis.from_url(url, socket_timeout=5, **_login(login))
    try:
        client.execute_command("ACL", "LOAD")
    except redis.exceptions.RedisError as exc:
        raise StackError(f"the running redis-server did not take the new ACL file ({exc}): "
                         "`rtba stack down`, then up again") from None  # fmt: skip
    finally:
        client.close()


def _cluster_up(home: Path, state: dict, fsync: str) -> None:
    """The Redis Cluster in ``state`` (``redis_cluster_ports``, ``..._pids``), started
    unless every node is up; the single server, if one was up, is stopped."""
    stop_pid(state.pop("redis_pid", None))
    pids = state.get("redis_cluster_pids") or []
    if pids and all(alive(p) for p in pids) and _cluster_ok(state["redis_cluster_ports"]):
        return
    for pid in pids:
        stop_pid(pid)
    ports = state.get("redis_cluster_ports") or []
    ports += state.get("redis_cluster_bus_ports") or []
    # The old ports are taken only while something listens on them: a port a client has
    # just left is in TIME_WAIT, which redis-server's SO_REUSEADDR binds through.
    if len(ports) != 2 * CLUSTER_MASTERS or any(_port_answers(f"127.0.0.1:{p}") for p in ports):
        ports = []  # a cluster remembers its nodes' ports: new ports, new cluster
        shutil.rmtree(home / "redis-cluster", ignore_errors=True)
        while len(ports) < 2 * CLUSTER_MASTERS:
            port = free_port()
            if port not in ports:
                ports.append(port)
    ports, bus = ports[:CLUSTER_MASTERS], ports[CLUSTER_MASTERS:]
    state["redis_cluster_pids"] = start_redis_cluster(home, ports, bus, fsync)
    state.update(redis_cluster_ports=ports, redis_cluster_bus_ports=bus, redis_port=ports[0],
                 redis_url=f"redis://127.0.0.1:{ports[0]}/0")  # fmt: skip
    _say(f"Redis Cluster up: {CLUSTER_MASTERS} masters on 127.0.0.1:{ports} "
         f"(pids {state['redis_cluster_pids']})")  # fmt: skip


def down(settings: Settings) -> dict:
    """Stop what `up` started (never an external stack)."""
    state = read_stack_state(settings.home)
    if external(settings) or not state:
        _say("nothing to stop: this stack was not started by rtba")
        return status(settings)
    stop_pid(state.get("kafka_pid"))
    stop_pid(state.get("redis_pid"))
    for pid in state.get("redis_cluster_pids") or []:
        stop_pid(pid)
    state.update(kafka_pid=None, redis_pid=None, redis_cluster_pids=None)
    stack_state_file(settings.home).write_text(json.dumps(state, indent=2))
    _say("stack stopped")
    return status(settings)
