"""A user with fewer rights than the supervisor would like is supervised anyway: it
degrades what it attributes and says once, with the ACL rule, what it cannot see."""

from __future__ import annotations

import anyio
import pytest

from supervisor import (
    Alert,
    ConnectionLost,
    ConnectionState,
    HealthCheckFailed,
    Message,
    Resubscribed,
)
from tests.helpers.events import Recorder, health_rounds, until

READY = ConnectionState.READY


@pytest.mark.parametrize(
    ("rules", "refused"),
    [
        (["+@all", "-@dangerous"], ["+info", "+client|list"]),  # no INFO, CONFIG, CLIENT LIST
        (["+@all", "-@admin"], ["+client|list"]),  # no CONFIG, CLIENT LIST
    ],
)
async def test_least_privilege_user_is_supervised(server, supervise, rules, refused):
    """The user becomes READY, commands and a pub/sub handle work, health rounds pass
    without a fake loss, and one Alert per refused command names the ACL rule."""
    admin = server.admin()
    admin.acl_setuser(
        "app",
        enabled=True,
        passwords=["+app-pw"],
        keys=["*"],
        channels=["*"],
        commands=rules,
    )
    url = f"redis://app:app-pw@127.0.0.1:{server.port}/0"
    recorded = Recorder()
    async with supervise(url) as sup:
        async with sup.subscribe() as events, anyio.create_task_group() as tg:
            tg.start_soon(recorded.record, events)
            await sup.wait_for(READY, timeout=5)
            async with sup.pubsub() as ps:
                await ps.subscribe("news")
                await sup.client.set("k", "v")
                assert await sup.client.get("k") == b"v"
                await health_rounds(sup, 3)
                admin.publish("news", "hi")
                with anyio.fail_after(5):
                    item = await ps.__anext__()
                assert isinstance(item, Message) and item.data == b"hi"
            await health_rounds(sup, 2)
            tg.cancel_scope.cancel()
        assert sup.state is READY
    assert recorded.of(ConnectionLost, Resubscribed, HealthCheckFailed) == []
    alerts = recorded.of(Alert)
    assert {a.name for a in alerts} == {"command_not_allowed"}
    for rule in refused:
        assert any(rule in a.detail for a in alerts), [a.detail for a in alerts]
    admin.close()


async def test_cache_for_a_user_without_the_invalidation_channel(server, supervise):
    """Redis 7's default ``acl-pubsub-default resetchannels``: SUBSCRIBE
    __redis__:invalidate is refused. Said once, reads go uncached, and the cache does
    not redial: waiting does not grant a channel."""
    admin = server.admin()
    admin.acl_setuser("app", enabled=True, passwords=["+app-pw"], keys=["*"], commands=["+@all"])
    url = f"redis://app:app-pw@127.0.0.1:{server.port}/0"
    admin.set("k", "v")
    recorded = Recorder()
    async with supervise(url, client_cache=True, cache_max_staleness=0.1) as sup:
        async with sup.subscribe() as events, sup.subscribe() as watch:
            async with anyio.create_task_group() as tg:
                tg.start_soon(recorded.record, events)
                await sup.wait_for(READY, timeout=5)
                await until(watch, lambda e: isinstance(e, Alert))
                dialed = int(admin.info("stats")["total_connections_received"])
                await health_rounds(sup, 10)
                for _ in range(3):
                    assert await sup.client.get("k") == b"v"
                redials = int(admin.info("stats")["total_connections_received"]) - dialed
                tg.cancel_scope.cancel()
        stats = sup.statistics().cache
        assert stats is not None and stats.hits == 0, stats
    alerts = recorded.of(Alert)
    assert len(alerts) == 1, alerts
    assert "&__redis__:invalidate" in alerts[0].detail and "app-pw" not in alerts[0].detail
    assert redials <= 1, f"the cache redialed {redials} times while refused"
    admin.close()
