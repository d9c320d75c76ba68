"""Everything rtba keeps in Redis: key names (``keys``), a customer's state as one value
(``state_codec``), the store and its Lua scripts (``store``, ``lua/``), the one client for
a single server or a Cluster (``redis_client``), the due-time index (``due_index``)."""
