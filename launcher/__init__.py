"""The local stack for trying rtba out and for the tests: real Kafka (KRaft, jars from
Maven Central) and Debian's redis-server on loopback. Not part of the runtime: workers
and the CLI only need addresses."""
