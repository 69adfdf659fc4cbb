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
from tests.helpers.events import Recorder, health_rounds

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
