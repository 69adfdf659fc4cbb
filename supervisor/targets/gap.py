"""How a pub/sub handle's gap is told: the cause of its loss and the marker's detail.

The window itself (``down_at``, ``up_at``) is the handle's; this module turns the
evidence of the loss into the cause and the sentence a log line carries.
"""

from __future__ import annotations

from supervisor.causes import Cause, Evidence, attribute
from supervisor.connection.losses import Loss
from supervisor.targets.subscriptions import Subscriptions

__all__ = ("gap_detail", "pubsub_limit")

_NAMED = 10
"""Names a ``Resubscribed`` detail (a log line) spells out; its fields hold them all."""


def gap_detail(
    loss: Loss,
    run_id_before: str | None,
    run_id_after: str | None,
    subs: Subscriptions,
    down_at: float,
    up_at: float,
) -> tuple[Cause, str]:
    cause, detail = attribute(
        Evidence(
            error=loss.error,
            run_id_before=run_id_before,
            run_id_after=run_id_after,
            reachable=True,
            output_buffer_seen=loss.output_buffer_seen,
            output_buffer_limit=loss.output_buffer_limit,
            stalled=loss.stalled,
            client_class="pubsub",
        )
    )
    everything = subs.everything()
    names = ", ".join(everything[:_NAMED])
    if len(everything) > _NAMED:
        names += f" and {len(everything) - _NAMED:,} more (the event lists them all)"
    gap = up_at - down_at
    return cause, (
        f"{detail}. Re-subscribed to {names}; messages published between down_at and "
        f"up_at ({gap:.2f} s) were not delivered: resync them"
    )


def pubsub_limit(limits: str) -> str | None:
    """The ``pubsub`` class of a ``client-output-buffer-limit`` value, if it limits anything."""
    parts = limits.split()
    for i in range(0, len(parts) - 3, 4):
        if parts[i] == "pubsub" and any(p != "0" for p in parts[i + 1 : i + 4]):
            hard, soft, seconds = parts[i + 1 : i + 4]
            return f"pubsub hard {hard} bytes, soft {soft} bytes for {seconds} s"
    return None
