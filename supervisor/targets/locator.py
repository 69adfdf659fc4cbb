"""The Sentinel locator: which address a Sentinel service's connections go to.

It asks the sentinels while the target is down (at most every ``DISCOVERY_GAP``),
acts on their announcements before the first failing command shows them, and moves
every new connection to the master they name, retiring those to the old one.
"""

from __future__ import annotations

import time
from contextlib import suppress

import anyio

from supervisor.causes import Cause
from supervisor.connection.probe import ProbeFailed
from supervisor.events import Alert, MasterChanged
from supervisor.state import ConnectionState
from supervisor.targets.context import SERVING, Context
from supervisor.targets.sentinel import SentinelNotice, SentinelWatcher

__all__ = ("DISCOVERY_GAP", "SentinelLocator")

DISCOVERY_GAP = 0.1
"""Seconds between asking the sentinels while reconnecting fast: their pushes
(``+switch-master``) cut any wait short, so polling faster buys nothing."""


class SentinelLocator:
    def __init__(self, ctx: Context, sentinel: SentinelWatcher) -> None:
        self._ctx = ctx
        self._sentinel = sentinel
        self._discovered_at = -DISCOVERY_GAP

    async def discover_if_due(self) -> None:
        """Before an attempt: follow the master the sentinels name now."""
        if time.monotonic() - self._discovered_at >= DISCOVERY_GAP:
            self._discovered_at = time.monotonic()
            cause = self._ctx.status.cause or Cause.FAILOVER
            await self.follow(await self._sentinel.discover(), cause)

    async def follow(self, address: tuple[str, int], cause: Cause) -> None:
        """Point every new connection at ``address``; retire every connection to the old one."""
        ctx = self._ctx
        if ctx.address == address:
            return
        old = address_of(ctx.connection_kwargs)
        host, port = address
        for kwargs in (ctx.connection_kwargs, ctx.pool.connection_kwargs, ctx.probe_kwargs):
            kwargs.update(host=host, port=port)
        if ctx.facts is None:
            return  # the first discovery: nothing moved
        ctx.publish(
            MasterChanged,
            old=old,
            new=f"{host}:{port}",
            cause=cause,
            detail=f"{ctx.config.service_name} moved from {old} to {host}:{port}",
        )
        await ctx.probe.close()
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await ctx.pool.disconnect(inuse_connections=True)

    async def on_notice(self, notice: SentinelNotice) -> None:
        """Act on what the sentinels say, before the first failing command shows it."""
        ctx = self._ctx
        state, current = ctx.status.state, ctx.status.cause
        if notice.kind == "failover-started" and state is ConnectionState.READY:
            ctx.transition(
                ConnectionState.UNHEALTHY,
                Cause.FAILOVER,
                f"Sentinel started a failover ({notice.detail}); writes wait",
            )
        elif (
            notice.kind == "failover-aborted"
            and current is Cause.FAILOVER
            and state is ConnectionState.UNHEALTHY
        ):
            ctx.transition(
                ConnectionState.READY,
                Cause.FAILOVER,
                f"Sentinel aborted the failover ({notice.detail})",
            )
        elif notice.kind == "switch-master" and notice.new_master is not None:
            first_sign = Cause.FAILOVER
            if state in SERVING:
                ctx.transition(ConnectionState.RECONNECTING, Cause.FAILOVER, notice.detail)
            elif current is not None:
                first_sign = current  # already down: that was the first sign
            await self.follow(notice.new_master, first_sign)
            self._discovered_at = time.monotonic()  # the announcement named the master
        elif notice.kind == "sentinels-lost":
            ctx.publish(Alert, name="sentinels_unreachable", firing=True, detail=notice.detail)
        elif notice.kind == "sentinels-back":
            ctx.publish(Alert, name="sentinels_unreachable", firing=False, detail=notice.detail)
            with suppress(ProbeFailed):
                address = await self._sentinel.discover()
                if address != ctx.address:
                    if ctx.status.state in SERVING:
                        ctx.transition(
                            ConnectionState.RECONNECTING,
                            Cause.FAILOVER,
                            "the master moved while no sentinel answered",
                        )
                    await self.follow(address, Cause.FAILOVER)
        ctx.check_now()
        ctx.target_may_be_back()


def address_of(kwargs: dict[str, object]) -> str:
    """``host:port`` (or the socket path) that connections built from ``kwargs`` go to."""
    return f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}".rstrip(":")
