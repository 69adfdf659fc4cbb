"""The kinds of target a supervisor watches: one server (or a Sentinel service), a Cluster.

Each coordinates the connection layer's parts (health round, prober, overload, Sentinel
locator) and owns its state machine and events. Imports the vocabulary and ``connection``.
"""
