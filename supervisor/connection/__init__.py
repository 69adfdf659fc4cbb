"""How one command reaches Redis, and what happens when its connection fails.

The pool, its connections and the gate in front of them, the re-send rule, the probe
and the reconnect schedule, auto-pipelining. Imports only the vocabulary (the
top-level modules: causes, config, errors, events, state...), never a subpackage.
"""
