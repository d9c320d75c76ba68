"""The Faust app and the processing behind it: events in, state and outputs out.

``app`` is the thin Faust module (topics, agents, timers); ``pipeline`` holds the batch
logic as plain functions; ``worker`` the leader's jobs (re-scoring tick, cluster trainer,
refits); ``schemas`` the event contract; ``outbox`` the write-then-send bookkeeping.
"""
