"""The read API (`rtba api`): FastAPI over what the pipeline keeps in Redis, a process of
its own that scales apart from the workers."""
