"""Bad input against a real server: a clear error or event, never a hang, never a secret."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from supervisor import (
    Cause,
    ConfigError,
    ConnectionState,
    ReconnectScheduled,
    Supervisor,
    SupervisorConfig,
    Unavailable,
)
from supervisor.testing import BinaryServer, TLSFiles
from tests.helpers.events import until
from tests.helpers.loops import prober_attempts
from tests.helpers.servers import make_server

SECRET = "hunter2-wrong"


@pytest.fixture
def protected():
    server = make_server(password="right-password")
    yield server
    server.close()


async def test_wrong_password_is_auth_without_a_storm_and_never_shown(protected, supervise):
    """A wrong password: cause AUTH, retries only every auth_retry_interval (one event
    and one log line for the situation, not one per attempt), commands fail at once with a
    clear error, and the password appears in no log line, event, repr or error."""
    url = f"redis://:{SECRET}@127.0.0.1:{protected.port}/0"
    with capture_logs() as logs:
        async with supervise(url, auth_retry_interval=0.1, refused_interval=0.01) as sup:
            async with sup.subscribe() as events:
                attempt = await until(events, lambda e: isinstance(e, ReconnectScheduled))
                assert attempt.cause is Cause.AUTH
                assert attempt.delay == 0.1  # the fixed interval: no storm, no fast retries
                assert "auth_retry_interval" in attempt.detail
                await prober_attempts(sup, 3)
                seen = [attempt]
                for _ in range(sup.config.event_buffer):  # what the buffer holds
                    if (event := events.receive_nowait()) is None:
                        break
                    seen.append(event)
                assert [e for e in seen if isinstance(e, ReconnectScheduled)] == [attempt]
                with anyio.fail_after(1), pytest.raises(Unavailable, match="auth") as info:
                    await sup.client.get("k")
                assert "password" in str(info.value)
                texts = [
                    repr(sup),
                    repr(sup.config),
                    repr(sup.client),
                    str(info.value),
                    repr(info.value.__cause__),
                    *map(repr, seen),
                ]
    texts += [repr(line) for line in logs]
    assert logs, "nothing was logged"
    for text in texts:
        assert SECRET not in text, text


async def test_missing_password_is_auth(protected, supervise):
    """No password for a protected server: cause AUTH (NOAUTH), not a generic error."""
    async with supervise(f"redis://127.0.0.1:{protected.port}/0") as sup:
        async with sup.subscribe() as events:
            attempt = await until(events, lambda e: isinstance(e, ReconnectScheduled))
            assert attempt.cause is Cause.AUTH


async def test_right_password_connects(protected, supervise):
    """The same server with the right password is READY."""
    async with supervise(protected.url) as sup:
        await sup.wait_for(ConnectionState.READY, timeout=5)
        assert await sup.client.ping()


async def test_unanswering_host_is_network_not_a_hang(proxy, supervise):
    """A host that accepts but never answers: events with cause NETWORK, commands fail at
    their deadline, and leaving the block returns promptly."""
    proxy.blackhole()
    with anyio.fail_after(10):
        async with supervise(
            proxy.url, command_deadline=0.3, socket_connect_timeout=0.3, health_check_timeout=0.2
        ) as sup:
            async with sup.subscribe() as events:
                attempt = await until(events, lambda e: isinstance(e, ReconnectScheduled))
                assert attempt.cause is Cause.NETWORK
                assert "no handshake reply" in attempt.detail
            with pytest.raises(Unavailable, match="network"):
                await sup.client.get("k")


async def test_logging_one_line_per_state_change_and_situation(server, supervise):
    """structlog gets one structured line per state change and per reconnect situation
    (not one per attempt: nothing listening is retried every refused_interval)."""
    with capture_logs() as logs:
        async with supervise(server.url) as sup, sup.subscribe() as events:
            await sup.wait_for(ConnectionState.READY, timeout=5)
            server.kill()
            await until(events, lambda e: isinstance(e, ReconnectScheduled))
            await prober_attempts(sup, 5)
            server.start()
            await sup.wait_for(ConnectionState.READY, timeout=10)
    changes = [line for line in logs if line["event"] == "state_changed"]
    attempts = [line for line in logs if line["event"] == "reconnect_scheduled"]
    assert [(c["previous"], c["current"]) for c in changes] == [
        ("connecting", "ready"),
        ("ready", "reconnecting"),
        ("reconnecting", "ready"),
        ("ready", "closed"),
    ]
    assert changes[2]["cause"] == "server_restart"
    assert len(attempts) == 1, attempts  # one situation: nothing listens
    assert "refused_interval" in attempts[0]["detail"]
    assert all({"attempt", "delay", "cause", "detail", "target"} <= set(a) for a in attempts)


async def test_config_error_before_anything_starts():
    """An unknown key or a bad value fails at construction, naming it: no task, no
    connection and no supervisor exists yet."""
    tasks = asyncio.all_tasks()
    with pytest.raises(TypeError):
        SupervisorConfig(urll="redis://x")  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="unknown key 'urll'"):
        Supervisor(SupervisorConfig.from_mapping({"urll": "redis://x"}))
    with pytest.raises(ConfigError, match="max_connections"):
        Supervisor(SupervisorConfig(max_connections=0))
    assert asyncio.all_tasks() == tasks


@pytest.mark.parametrize(
    "url",
    [
        "redis://:p#ss-SECRET@127.0.0.1:6379/0",
        "redis://user:p/w?SECRET@127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/0?password=SECRET",
        "redis://:SECRET@[::1]:6379/0",
        "redis://:SECRET@127.0.0.1:99999/0",
    ],
)
def test_no_url_form_shows_the_password(url):
    """Whatever a password holds and wherever the URL puts it, no repr, display_url or
    ConfigError shows it; an unencoded '#', '/' or '?' is refused with the fix."""
    try:
        config = SupervisorConfig(url=url)
    except ConfigError as exc:
        assert "SECRET" not in str(exc)
        assert "***" in str(exc)
    else:
        assert "SECRET" not in repr(config)
        assert "SECRET" not in config.display_url
        assert "[::1]" in config.display_url or "password=***" in config.display_url


def test_diagnose_takes_the_password_from_a_file(protected, tmp_path):
    """diagnose reads the password from --password-file (not the command line, where
    `ps` and shell history show it); it never prints it."""
    from tests.helpers.child import run_python_m
    from tests.helpers.servers import BOUND

    secret = tmp_path / "password"
    secret.write_text("right-password\n")
    url = f"redis://127.0.0.1:{protected.port}/0"
    code, out, err = run_python_m("diagnose", url, "--password-file", str(secret), timeout=BOUND)
    assert code in (0, 1), out + err
    assert "clients:" in out
    assert "right-password" not in out + err
    secret.write_text(f"{SECRET}\n")
    code, out, err = run_python_m("diagnose", url, "--password-file", str(secret), timeout=BOUND)
    assert code == 2
    assert SECRET not in out + err
    assert "auth" in err.lower()


@pytest.fixture(scope="module")
def tls_server():
    files = TLSFiles()
    server = BinaryServer(tls=files)
    server.start()
    yield server
    server.close()
    files.close()


async def _refused_for_tls(sup: Supervisor, *fragments: str) -> ReconnectScheduled:
    """The situation is TLS, retried every auth_retry_interval, and a command fails at
    once with the cause and each fragment of the fix."""
    async with sup.subscribe() as events:
        attempt = await until(
            events, lambda e: isinstance(e, ReconnectScheduled) and e.cause is not Cause.NETWORK
        )
    assert attempt.cause is Cause.TLS, attempt
    assert attempt.delay == sup.config.auth_retry_interval
    with anyio.fail_after(1), pytest.raises(Unavailable, match="cause tls") as info:
        await sup.client.get("never sent")
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return attempt


async def test_an_untrusted_certificate_is_tls_and_fails_at_once(tls_server, supervise):
    """A certificate signed by a CA the client does not trust: cause TLS (not NETWORK),
    retried slowly, commands fail at once naming the certificate and `ssl_ca_certs`
    instead of waiting out command_deadline."""
    other = TLSFiles()
    try:
        async with supervise(
            tls_server.url, redis_options={"ssl_ca_certs": other.ca}, auth_retry_interval=0.5
        ) as sup:
            await _refused_for_tls(sup, "certificate verify failed", "ssl_ca_certs")
    finally:
        other.close()


async def test_a_redis_url_at_a_tls_port_says_use_rediss(tls_server, supervise):
    """redis:// at a port that speaks TLS only: the handshake is reset, the port is asked
    once what it speaks, and the error says to use rediss://."""
    async with supervise(tls_server.url.replace("rediss://", "redis://")) as sup:
        await _refused_for_tls(sup, "this port speaks TLS: use a rediss:// URL")


async def test_a_rediss_url_at_a_plain_port_says_use_redis(server, supervise):
    """rediss:// at a plain port: the TLS handshake times out, the port answers a plain
    PING, and the error says to use redis://."""
    url = server.url.replace("redis://", "rediss://")
    async with supervise(url, socket_connect_timeout=0.3) as sup:
        await _refused_for_tls(sup, "this port does not speak TLS: use a redis:// URL")


async def _an_http_port() -> tuple[int, Any]:
    """A tiny HTTP server on a free port: what answers there is not Redis."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server.sockets[0].getsockname()[1], server


@pytest.mark.parametrize("where", ["db 16", "an http port"])
async def test_a_url_waiting_cannot_fix_fails_at_once_with_its_cause(
    shared_server, supervise, where
):
    """A db index the server does not have, or a port where something else answers:
    redis-py raises at once, and so does sup.client, with cause SETUP and the fix;
    attempts go only every auth_retry_interval (no storm)."""
    http = None
    if where == "db 16":
        url = shared_server.url.rsplit("/", 1)[0] + "/16"
    else:
        port, http = await _an_http_port()
        url = f"redis://127.0.0.1:{port}/0"
    try:
        async with supervise(url, auth_retry_interval=0.1, command_deadline=30) as sup:
            async with sup.subscribe() as events:
                attempt = await until(events, lambda e: isinstance(e, ReconnectScheduled))
                assert attempt.cause is Cause.SETUP, attempt
                assert attempt.delay == 0.1
            with anyio.fail_after(1), pytest.raises(Unavailable) as info:
                await sup.client.get("k")
            assert info.value.cause is Cause.SETUP
            assert ("out of range" if where == "db 16" else "protocol") in str(info.value)
    finally:
        if http is not None:
            http.close()
