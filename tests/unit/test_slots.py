"""benchmarks/slots.py's census: which MONITOR lines count, in which slot (the slots of
"foo" and "bar" are Redis's own documented examples: CLUSTER KEYSLOT foo is 12182)."""

from __future__ import annotations

from benchmarks.slots import Census

LINES = [
    b'1700000000.000001 [0 127.0.0.1:50000] "EVALSHA" "ab12" "2" "{foo}:c" "{foo}:o" "1"',
    b'1700000000.000002 [0 lua] "HINCRBY" "{bar}:facts" "x" "1"',  # inside the script
    b'1700000000.000003 [0 127.0.0.1:50000] "HINCRBY" "bar" "records" "5"',
    b'1700000000.000004 [0 127.0.0.1:50001] "PING"',
    b'1700000000.000005 [0 127.0.0.1:50001] "SET" "foo" "1|{\\"a\\": \\"b c\\"}"',
    b'1700000000.000006 [0 127.0.0.1:50001] "EVALSHA" "ab12" "0" "x"',
    b"OK",
]


def test_each_client_command_counts_once_in_its_first_keys_slot():
    census = Census()
    for line in LINES:
        census.count(line)
    assert census.slots == {12182: 2, 5061: 1}
    assert census.keyless == 2  # PING and a script with no key; Lua's own HINCRBY not at all
    summary = census.summary(3)
    assert summary["commands"] == 3 and summary["slots_used"] == 2
    assert summary["top"][0]["slot"] == 12182 and summary["top"][0]["share"] == 2 / 3
    assert abs(summary["limit_share"] - (1 / 3 + 0.1)) < 1e-12
