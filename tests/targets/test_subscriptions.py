"""A handle's subscriptions: confirmations answer the oldest command, a refusal takes
its names out, and a lost connection's unanswered calls are answered by the
resubscription that sends every name in one command per kind."""

from __future__ import annotations

from redis.exceptions import ResponseError

from supervisor.connection.losses import Loss
from supervisor.targets.gap import gap_detail, pubsub_limit
from supervisor.targets.subscriptions import Subscriptions


def test_confirmations_answer_commands_in_order_and_a_refusal_takes_its_names_out() -> None:
    subs = Subscriptions()
    first, second = subs.request("subscribe", ("a", "b")), subs.request("psubscribe", ("p.*",))
    subs.sending(first)
    subs.sending(second)
    subs.confirmed()
    assert not first.done.is_set()
    subs.confirmed()
    assert first.done.is_set() and first.error is None
    refusal = ResponseError("NOPERM this user has no permissions to access the 'p.*' channel")
    subs.refuse(refusal)
    assert second.done.is_set() and second.error is refusal
    assert subs.channels == {"a", "b"} and subs.patterns == set()


def test_calls_unanswered_at_a_loss_are_answered_by_the_resubscription() -> None:
    subs = Subscriptions()
    sent = subs.request("subscribe", tuple(f"c{i}" for i in range(5000)))
    subs.sending(sent)
    subs.connection_gone()
    later = subs.request("ssubscribe", ("s",))
    subs.wait_for_connection(later)
    batch = subs.resubscription()
    assert [(b.kind, len(b.names)) for b in batch] == [("subscribe", 5000), ("ssubscribe", 1)]
    subs.resubscribed(batch)
    assert sent.done.is_set() and later.done.is_set()
    assert subs.unsubscribe_commands()[0][0] == "UNSUBSCRIBE"


def test_the_gap_detail_names_ten_channels_and_counts_the_rest() -> None:
    subs = Subscriptions()
    subs.request("subscribe", tuple(f"c{i:02}" for i in range(25)))
    loss = Loss("Connection closed by server.", None, command_failed=True)
    _, detail = gap_detail(loss, "a" * 40, "a" * 40, subs, down_at=10.0, up_at=10.5)
    assert "c00, c01" in detail and "c09 and 15 more (the event lists them all)" in detail
    assert "c10" not in detail and "(0.50 s)" in detail


def test_the_pubsub_class_limit_is_read_from_client_output_buffer_limit() -> None:
    value = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
    assert pubsub_limit(value) == "pubsub hard 33554432 bytes, soft 8388608 bytes for 60 s"
    assert pubsub_limit("normal 0 0 0 pubsub 0 0 0") is None
