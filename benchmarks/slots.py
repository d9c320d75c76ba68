"""How a run's Redis commands spread over the Cluster's slots: MONITOR on every master
while the run goes, each client command counted in the slot of its first key.

Issue #27's check: no slot takes more than 1/shards + 10% of the commands in a
three-master Cluster run of d. A script call counts once (the commands Lua runs inside
it are that call's; MONITOR shows them with a ``lua`` client, skipped), so a script that
writes 200 customers of one slot is one command of that slot. Commands without a key
(PING, INFO, CLUSTER ..., MULTI, EXEC, CLIENT ..., READONLY) are counted apart.

MONITOR costs the server (each command is copied to the watcher): run it in a run of
its own, not one whose speed is reported. Used by ``benchmarks.pipeline --slot-census``.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field

import redis
from redis.crc import key_slot

# "<time> [<db> <client>] "arg" "arg" ...": the client, then the first few arguments
_LINE = re.compile(rb'^[\d.]+ \[\d+ ([^\]]*)\] ((?:"(?:[^"\\]|\\.)*" ?){1,5})')
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_NO_KEY = {b"ping", b"info", b"cluster", b"multi", b"exec", b"client", b"readonly",
           b"hello", b"select", b"config", b"script", b"memory", b"dbsize", b"monitor",
           b"command", b"function", b"time", b"echo", b"auth", b"flushall", b"scan",
           b"quit", b"reset", b"discard", b"wait", b"role", b"slowlog", b"latency"}  # fmt: skip
_SCRIPT = {b"evalsha", b"eval", b"evalsha_ro", b"eval_ro", b"fcall", b"fcall_ro"}


def first_key(args: list[bytes]) -> bytes | None:
    """The first key of a command's arguments (name first), or None without one.

    >>> first_key([b"EVALSHA", b"ab12", b"2", b"{x}:a", b"{x}:b"]), first_key([b"PING"])
    (b'{x}:a', None)
    >>> first_key([b"EVALSHA", b"ab12", b"0", b"arg"]), first_key([b"HINCRBY", b"k", b"f"])
    (None, b'k')
    """
    name = args[0].lower()
    if name in _NO_KEY or len(args) < 2:
        return None
    if name in _SCRIPT:
        return args[3] if len(args) > 3 and args[2] != b"0" else None
    return args[1]


@dataclass
class Census:
    """Commands per slot, summed over the masters."""

    slots: Counter = field(default_factory=Counter)
    example: dict = field(default_factory=dict)  # slot -> a key seen in it
    keyless: int = 0
    names: Counter = field(default_factory=Counter)  # commands by name
    unparsed: int = 0

    def count(self, line: bytes) -> None:
        found = _LINE.match(line)
        if not found:
            self.unparsed += 1
            return
        if found.group(1) == b"lua":
            return
        args = [_unescape(a) for a in _ARG.findall(found.group(2))]
        if args:
            self.names[args[0].decode(errors="replace").upper()] += 1
        key = first_key(args) if args else None
        if key is None:
            self.keyless += 1
            return
        slot = key_slot(key)
        self.slots[slot] += 1
        self.example.setdefault(slot, key.decode(errors="replace"))

    def summary(self, shards: int) -> dict:
        """The busiest slots' shares of the keyed commands, against 1/shards + 10%."""
        total = sum(self.slots.values())
        top = self.slots.most_common(5)
        return {
            "commands": total,
            "keyless": self.keyless,
            "slots_used": len(self.slots),
            "by_command": dict(self.names.most_common(12)),
            "unparsed": self.unparsed,
            "limit_share": 1 / shards + 0.10,
            "top": [
                {
                    "slot": s,
                    "share": n / total if total else 0.0,
                    "commands": n,
                    "example_key": self.example[s],
                }
                for s, n in top
            ],  # fmt: skip
        }


def _unescape(raw: bytes) -> bytes:
    # MONITOR writes \" and \\ and \xNN; a key's bytes are all that is needed here
    return re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]),
                  raw.replace(b'\\"', b'"').replace(b"\\\\", b"\\"))  # fmt: skip


class Watch:
    """MONITOR on every master of ``client`` (a RedisCluster) while the block runs."""

    def __init__(self, client):
        self.nodes = [(n.host, n.port) for n in client.get_primaries()]
        self.census = Census()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[redis.Connection] = []

    def __enter__(self) -> Watch:
        for host, port in self.nodes:
            conn = redis.Connection(host=host, port=port, socket_timeout=1.0)
            conn.send_command("MONITOR")
            assert conn.read_response() in (b"OK", "OK")
            self._conns.append(conn)
            thread = threading.Thread(target=self._read, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _read(self, conn) -> None:
        # The reader lags the server (a Python thread against Redis): after the run it
        # reads on until a second passes with nothing, so no line of the run is dropped.
        while True:
            try:
                line = conn.read_response()
            except (redis.TimeoutError, TimeoutError):
                if self._stop.is_set():
                    return
                continue
            except (redis.ConnectionError, OSError):
                return
            if isinstance(line, bytes) and b" lua] " not in line[:64]:
                with self._lock:
                    self.census.count(line)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        for conn in self._conns:
            conn.disconnect()
