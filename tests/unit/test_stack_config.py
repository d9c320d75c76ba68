"""What `rtba stack up` writes for a secured stack, read as data: the Redis roles of
infra/redis/roles.toml and the Kafka broker's listeners (docs/security.md)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from launcher.stack import BrokerTLS, Listener, _acl, _server_properties

ROOT = Path(__file__).resolve().parents[2]
ROLES = tomllib.loads((ROOT / "infra" / "redis" / "roles.toml").read_text())
# Server-wide, destructive or revealing: none of these is for the worker or the API.
FORBIDDEN = {"config", "flushall", "flushdb", "debug", "shutdown", "module", "acl", "keys",
             "scan", "monitor", "replicaof", "slaveof", "save", "bgsave", "migrate",
             "restore", "failover", "sync", "psync", "swapdb", "move", "script|flush",
             "client|kill", "function"}  # fmt: skip


def granted(role: str) -> set[str]:
    return {rule.lstrip("+").lower() for rule in ROLES[role]["commands"]}


@pytest.mark.parametrize("role", ["worker", "api"])
def test_the_roles_run_nothing_dangerous_on_nothing_but_their_namespace(role):
    rules = ROLES[role]["commands"]
    assert all(rule.startswith("+") and "@" not in rule for rule in rules), rules  # no categories
    names = granted(role)
    assert not {name.split("|")[0] for name in names} & FORBIDDEN - {"script", "client"}
    assert not names & FORBIDDEN, names & FORBIDDEN
    assert ROLES[role]["channels"] == []
    for pattern in ROLES[role]["keys"]:
        assert re.fullmatch(r"(%R)?~\{ns\}:[a-z:]*\*", pattern), pattern


def test_the_worker_may_run_every_command_its_scripts_call():
    called = set()
    for script in (ROOT / "streams" / "state" / "lua").glob("*.lua"):
        called |= {c.lower() for c in re.findall(r"redis\.p?call\(\s*'(\w+)'", script.read_text())}
    assert called and called <= granted("worker"), called - granted("worker")


def test_the_api_reads_its_namespace_and_writes_only_its_own_keys():
    writable = [k for k in ROLES["api"]["keys"] if k.startswith("~")]
    assert writable == ["~{ns}:dashboard:*"]
    assert "%R~{ns}:*" in ROLES["api"]["keys"]
    assert not granted("api") & {"hset", "hdel", "hincrby", "zadd", "zrem", "eval", "unlink"}


def test_the_acl_file_lets_in_the_admin_and_each_role_with_its_rules():
    text = _acl("ops", "pw-admin", {"worker": ("w", "pw-w"), "api": ("a", "pw-a")}, "shop")
    lines = text.splitlines()
    assert lines[0] == "user default off"
    assert lines[1].startswith("user ops on >pw-admin ") and lines[1].endswith("+@all")
    worker = next(line for line in lines if line.startswith("user w on >pw-w "))
    assert " ~shop:* " in f"{worker} " and "~*" not in worker.replace("~shop:*", "")
    assert worker.index("-@all") < worker.index("+evalsha")  # from nothing, then grants
    api = next(line for line in lines if line.startswith("user a on >pw-a "))
    assert "%R~shop:* ~shop:dashboard:*" in api and "{ns}" not in text


def listeners(properties: str) -> tuple[dict[str, str], dict[str, str]]:
    """{listener name: protocol} of a server.properties, and all its values."""
    values = dict(line.split("=", 1) for line in properties.splitlines()
                  if "=" in line and not line.startswith("#"))  # fmt: skip
    protocols = dict(
        pair.split(":") for pair in values["listener.security.protocol.map"].split(",")
    )
    names = [entry.split("://")[0] for entry in values["listeners"].split(",")]
    return {name: protocols[name] for name in names}, values


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_a_secured_broker_serves_clients_on_its_sasl_listener_alone(protocol, tmp_path):
    tls = (
        BrokerTLS(tmp_path / "ca.pem", tmp_path / "keystore.pem")
        if protocol == "SASL_SSL"
        else None
    )
    text = _server_properties(tmp_path, 9001, 9002, 3, Listener(protocol, "u", "pw-1", tls))
    found, values = listeners(text)
    assert found == {protocol: protocol, "CONTROLLER": "PLAINTEXT"}
    assert values["listeners"] == f"{protocol}://127.0.0.1:9001,CONTROLLER://127.0.0.1:9002"
    assert values["advertised.listeners"] == f"{protocol}://127.0.0.1:9001"
    assert values["inter.broker.listener.name"] == protocol
    assert values["controller.listener.names"] == "CONTROLLER"
    if tls:
        assert values["ssl.keystore.type"] == "PEM" == values["ssl.truststore.type"]
        assert values["ssl.truststore.location"] == str(tmp_path / "ca.pem")
    unsecured, _ = listeners(_server_properties(tmp_path, 9001, 9002, 3))
    assert unsecured == {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT"}


class AsyncRecorder:
    """An asyncio Redis client stand-in that keeps the names of the commands sent."""

    def __init__(self):
        self.sent = []

    async def hsetnx(self, key, field, value):
        self.sent.append("hsetnx")

    async def hget(self, key, field):
        self.sent.append("hget")
        return b"salt"

    def pipeline(self, transaction=True):
        return self

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False

    def xadd(self, key, fields, **options):
        self.sent.append("xadd")

    async def execute(self):
        return []


def test_the_worker_may_write_the_retention_erasures_audit_entries():
    """The retention erase runs in the worker under its role: every command its audit
    entries take must be granted (XADD was not: NOPERM on the first retention erase)."""
    import asyncio

    from streams import audit

    client = AsyncRecorder()
    asyncio.run(audit.record_async(client, "shop", "retention", ["a", "b"], "erased"))
    assert "xadd" in client.sent and set(client.sent) <= granted("worker"), client.sent
