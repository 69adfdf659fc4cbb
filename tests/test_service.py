"""The standalone process, the monitor, diagnose, the demo and ASGI embedding."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path

import anyio
import httpx
import pytest
import redis

from supervisor import (
    Alert,
    Cause,
    ConnectionState,
    HealthCheckFailed,
    ServerSampled,
    Unavailable,
)
from supervisor.service.monitor import Monitor, MonitorConfig
from tests.helpers.child import python_m, run_python_m
from tests.helpers.events import until
from tests.helpers.servers import free_port, make_server

ROOT = Path(__file__).resolve().parents[1]
BOUND = 20.0


def get(port: int, path: str) -> tuple[int, str]:
    with httpx.Client(timeout=5) as client:
        response = client.get(f"http://127.0.0.1:{port}{path}")
        return response.status_code, response.text


def wait_http(port: int, path: str, status: int) -> str:
    """Poll an endpoint until it answers ``status`` (bounded): sync on the process's state."""
    deadline = time.monotonic() + BOUND
    last = None
    while time.monotonic() < deadline:
        try:
            code, body = get(port, path)
            if code == status:
                return body
            last = (code, body)
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{path} never answered {status}: last {last}")


@pytest.fixture
def two_servers():
    a, b = make_server(), make_server()
    yield a, b
    a.close()
    b.close()


def test_run_serves_health_and_metrics_and_stops_on_sigterm(two_servers, tmp_path):
    """Two targets: /health is 200 only when both are READY and 503 with the cause when
    one is killed; /metrics is Prometheus text; SIGTERM exits 0; logs are JSON lines."""
    a, b = two_servers
    port = free_port()
    config = tmp_path / "service.toml"
    config.write_text(f"""
[http]
port = {port}

[monitor]
interval = 0.2

[targets.cache]
url = "{a.url}"
health_check_interval = 0.2
health_check_timeout = 0.2
backoff_base = 0.05
backoff_cap = 0.2

[targets.queue]
url = "{b.url}"
health_check_interval = 0.2
health_check_timeout = 0.2
""")
    with python_m("run", "--config", str(config), "--log-level", "debug") as proc:
        body = json.loads(wait_http(port, "/health", 200))
        assert body["status"] == "ready"
        assert set(body["targets"]) == {"cache", "queue"}
        a.kill()
        body = json.loads(wait_http(port, "/health", 503))
        assert body["targets"]["cache"]["state"] == "reconnecting"
        assert body["targets"]["cache"]["cause"] == "network"
        assert body["targets"]["queue"]["state"] == "ready"
        a.start()
        wait_http(port, "/health", 200)
        code, metrics = get(port, "/metrics")
        assert code == 200
        assert 'supervisor_state{state="ready",target="cache"} 1.0' in metrics
        assert 'supervisor_connection_losses_total{cause="network",target="cache"}' in metrics
        assert 'supervisor_reconnect_attempts_total{cause="network",target="cache"}' in metrics
        assert "supervisor_health_check_latency_seconds{" in metrics
        assert 'redis_connected_clients{target="queue"}' in metrics
        assert get(port, "/nope")[0] == 404
        proc.send_signal(signal.SIGTERM)
        out, err = proc.finish(timeout=BOUND)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    names = {line["event"] for line in lines}
    assert {
        "http_listening",
        "state_changed",
        "reconnect_scheduled",
        "server_sampled",  # at debug: every monitor interval
        "shutdown",
        "stopped",
    } <= names
    closed = [x for x in lines if x["event"] == "state_changed" and x["current"] == "closed"]
    assert len(closed) == 2


def test_sigint_also_stops_cleanly(shared_server, tmp_path):
    """SIGINT ends the process with exit 0, like SIGTERM."""
    port = free_port()
    config = tmp_path / "s.toml"
    config.write_text(f'[http]\nport = {port}\n[targets.main]\nurl = "{shared_server.url}"\n')
    with python_m("run", "--config", str(config)) as proc:
        wait_http(port, "/health", 200)
        proc.send_signal(signal.SIGINT)
        proc.finish(timeout=BOUND)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            '[targets.main]\nurl = "redis://127.0.0.1:6379/0"\nhealth_check_intervall = 1\n',
            "health_check_intervall",
        ),
        ('[http]\nprot = 1\n[targets.main]\nurl = "redis://x:1/0"\n', "prot"),
        ('[targets.main]\nurl = "http://nope"\n', "scheme 'http'"),
        ("[targets]\n", "[targets] is empty"),
        ("url = 'redis://127.0.0.1:6379/0'\noffline = 'never'\n", "offline"),
        ('[monitor]\ninterval = nan\n[targets.main]\nurl = "redis://x:1/0"\n', "got nan"),
        ('[monitor]\ninterval = 0.0001\n[targets.main]\nurl = "redis://x:1/0"\n', "0.0001"),
        ('[monitor]\ninterval = inf\n[targets.main]\nurl = "redis://x:1/0"\n', "got inf"),
    ],
)
def test_bad_config_exits_2_naming_key_and_file(tmp_path, text, named):
    """Bad config: exit 2 and a message naming the key and the file, before anything starts."""
    config = tmp_path / "bad.toml"
    config.write_text(text)
    code, out, err = run_python_m("run", "--config", str(config), timeout=BOUND)
    assert code == 2
    assert named in err
    assert str(config) in err
    assert out == ""


def test_example_service_config_loads():
    """config/service.toml, the documented example, is valid."""
    from supervisor.service.config import ServiceConfig

    config = ServiceConfig.from_file(ROOT / "config" / "service.toml", env={})
    assert "main" in config.targets
    assert config.http.host == "127.0.0.1"


async def test_monitor_samples_and_alerts(server, supervise):
    """The monitor publishes samples and fires alerts on maxclients, rejected
    connections and blocked clients."""
    admin = server.admin()
    async with supervise(server.url) as sup, sup.subscribe(max_buffer=1000) as events:
        await sup.wait_for(ConnectionState.READY, timeout=5)
        monitor = Monitor(sup, MonitorConfig(interval=0.1, blocked_clients=1))
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            sample = await until(events, lambda e: isinstance(e, ServerSampled))
            assert sample.maxclients == 10000 and sample.timeout == 0
            blocker = redis.Redis(host=server.host, port=server.port)
            blocker.execute_command("CLIENT", "SETNAME", "blocker")
            tg.start_soon(anyio.to_thread.run_sync, lambda: blocker.blpop(["nothing"], 3))
            alert = await until(
                events, lambda e: isinstance(e, Alert) and e.name == "blocked_clients"
            )
            assert alert.firing and "blocked" in alert.detail
            admin.client_unblock(
                int(next(c["id"] for c in admin.client_list() if c["name"] == "blocker"))
            )
            connected = int(admin.info("clients")["connected_clients"])
            admin.config_set("maxclients", connected)
            alert = await until(
                events, lambda e: isinstance(e, Alert) and e.name == "clients_near_maxclients"
            )
            assert alert.firing and "maxclients" in alert.detail
            with pytest.raises(redis.ConnectionError):
                redis.Redis(host=server.host, port=server.port).ping()
            alert = await until(
                events, lambda e: isinstance(e, Alert) and e.name == "rejected_connections"
            )
            assert "maxclients" in alert.detail
            admin.config_set("maxclients", 10000)
            cleared = await until(
                events, lambda e: isinstance(e, Alert) and e.name == "clients_near_maxclients"
            )
            assert not cleared.firing
            tg.cancel_scope.cancel()
            blocker.close()
    admin.close()


async def test_monitor_without_config_says_so_once(supervise):
    """Managed Redis without CONFIG: one config_not_allowed alert, then INFO-only samples."""
    server = make_server("--rename-command", "CONFIG", '""')
    try:
        async with supervise(server.url) as sup, sup.subscribe(max_buffer=1000) as events:
            await sup.wait_for(ConnectionState.READY, timeout=5)
            monitor = Monitor(sup, MonitorConfig(interval=0.05))
            async with anyio.create_task_group() as tg:
                tg.start_soon(monitor.run)
                alert = await until(events, lambda e: isinstance(e, Alert))
                assert alert.name == "config_not_allowed"
                samples = []
                while len(samples) < 3:
                    event = await until(events, lambda e: isinstance(e, (ServerSampled, Alert)))
                    assert isinstance(event, ServerSampled), "said more than once"
                    samples.append(event)
                assert samples[-1].maxclients is None
                assert samples[-1].connected_clients >= 1
                tg.cancel_scope.cancel()
    finally:
        server.close()


async def test_diagnose_names_idle_clients_and_keepalive(server):
    """Clients idle near the server timeout and tcp-keepalive 0 are findings, each with a fix."""
    from supervisor import SupervisorConfig
    from supervisor.service.diagnose import diagnose, render

    admin = server.admin()
    admin.config_set("timeout", 4)
    admin.config_set("tcp-keepalive", 0)
    idle = socket.create_connection((server.host, server.port))
    for _ in range(100):  # polls the server's own idle clock, at most 10 s
        if any(int(c["idle"]) >= 3 for c in admin.client_list() if c["cmd"] == "NULL"):
            break
        await anyio.sleep(0.1)
    else:
        pytest.fail("the idle client never reached 3 s of idleness")
    report = await diagnose(SupervisorConfig(url=server.url, decode_responses=True))
    text = render(report)
    assert "timeout is 4 s and 1 clients idle over 3 s: they will be closed" in text
    assert "tcp-keepalive is 0" in text
    assert text.count("fix:") >= 2
    assert "idlest:" in text
    assert not report.serious
    idle.close()
    admin.close()


def test_diagnose_exit_codes_and_json(server):
    """Connections rejected while diagnose samples are serious (exit 1, the fix names
    maxclients); a past burst is only told (exit 0); --json prints the same report; an
    unreachable server exits 2 with the reason."""
    admin = server.admin()
    admin.config_set("maxclients", 1)
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host=server.host, port=server.port).ping()
    admin.config_set("maxclients", 10000)
    code, out, err = run_python_m("diagnose", server.url, "--window", "0.1", timeout=BOUND)
    assert code == 0, out + err
    assert re.search(r"rejected_connections is \d+ since the server started .*a past burst", out)
    admin.config_resetstat()  # commandstats of the first diagnose would end the wait below
    with python_m("diagnose", server.url, "--json", "--window", "5") as child:
        deadline = time.monotonic() + BOUND
        # its first sample is taken once it has listed the clients: reject one after that
        while "cmdstat_client|list" not in admin.info("commandstats"):
            assert time.monotonic() < deadline, "diagnose never listed the clients"
            time.sleep(0.01)
        admin.config_set("maxclients", 1)
        with pytest.raises(redis.ConnectionError):
            redis.Redis(host=server.host, port=server.port, retry=None).ping()
        admin.config_set("maxclients", 10000)
        out, err = child.finish(BOUND)
    assert child.returncode == 1, out + err
    report = json.loads(out)
    assert report["serious"] is True and report["in_window"]["rejected_connections"] >= 1
    [finding] = [f for f in report["findings"] if f["severity"] == "serious"]
    assert "rejected_connections grew by" in finding["finding"]
    assert "CONFIG SET maxclients" in finding["fix"]
    admin.close()
    code, out, err = run_python_m("diagnose", f"redis://127.0.0.1:{free_port()}/0", timeout=BOUND)
    assert code == 2
    assert "cannot connect" in err and "refused" in err.lower()


def test_diagnose_as_a_user_without_info_and_beside_a_service_s_variables(server):
    """A user that may not run INFO is diagnosed with what it may read (exit 0 or 1, the
    refusal a finding with the ACL fix), not told it cannot connect; and `diagnose URL`
    starts where a service's SUPERVISOR_<TARGET>__<KEY> variables are set."""
    admin = server.admin()
    admin.acl_setuser(
        "noinfo", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-info"]
    )
    url = f"redis://noinfo:pw@127.0.0.1:{server.port}/0"
    code, out, err = run_python_m("diagnose", url, "--window", "0", timeout=BOUND)
    assert code in (0, 1), out + err
    assert "cannot connect" not in err
    assert "refused INFO" in out and "+info" in out, out
    env = {"SUPERVISOR_MAIN__URL": "redis://127.0.0.1:1/0", "SUPERVISOR_MAIN__CLIENT_NAME": "x"}
    code, out, err = run_python_m("diagnose", server.url, "--window", "0", timeout=BOUND, env=env)
    assert code in (0, 1), out + err
    admin.close()


def test_diagnose_names_the_usual_causes_and_a_missing_password(server):
    """timeout > 0 is a finding with its fix even with nobody near it; risky pub/sub and
    replica output-buffer limits are named; a password-protected server without one says
    how to pass it."""
    admin = server.admin()
    admin.config_set("timeout", 300)
    admin.config_set("client-output-buffer-limit", "pubsub 1mb 256kb 5 replica 16mb 4mb 60")
    code, out, err = run_python_m("diagnose", server.url, "--window", "0", timeout=BOUND)
    assert code == 0, out + err
    assert "timeout is 300 s: the server closes every client idle that long" in out
    assert "CONFIG SET timeout 0" in out
    assert "pubsub hard limit is 1,048,576 bytes" in out
    assert "replica hard limit is 16,777,216 bytes" in out
    admin.config_set("requirepass", "pw-42")
    code, out, err = run_python_m("diagnose", server.url, "--window", "0", timeout=BOUND)
    assert code == 2
    assert "this server needs a password" in err and "SUPERVISOR_PASSWORD" in err
    assert "auth_retry_interval" not in err
    bad = server.url.replace("redis://", "redis://:wrong@")
    code, out, err = run_python_m("diagnose", bad, "--window", "0", timeout=BOUND)
    assert code == 2 and "the server refused the password" in err and "wrong" not in err
    admin.close()


def test_diagnose_healthy_server_exits_0(shared_server):
    """No serious finding: exit 0."""
    code, out, err = run_python_m("diagnose", shared_server.url, timeout=BOUND)
    assert code == 0, out + err


@pytest.mark.timeout(150)
def test_demo_lines_cut_long_details_between_words():
    from supervisor.service.demo import _line

    detail = "the server closed the connection while it stayed up " * 5
    event = HealthCheckFailed(seq=1, at=0.0, target="t", cause=Cause.NETWORK, detail=detail)
    line = _line(event)
    assert line is not None and line.endswith(" …") and len(line) < 200, line
    shown = line.split(": ", 1)[1].removesuffix(" …").split()
    assert shown == detail.split()[: len(shown)], line  # whole words only


def test_demo_end_to_end():
    """The demo injects every fault and ends with a summary: no unexpected errors."""
    code, out, err = run_python_m("demo", "--quick", timeout=120)
    assert code == 0, out + err
    for cause in (
        "server_closed",
        "server_restart",
        "network",
        "maxclients",
        "output_buffer_limit",
    ):
        assert cause in out
    assert "stopped the throwaway redis-server" in out


async def test_asgi_readiness_follows_the_server(server):
    """The example Starlette app: /ready is 200, 503 when the server is killed, 200 when
    it is back; /hits counts through the supervised client."""
    from examples.starlette_app import create_app
    from supervisor import SupervisorConfig

    config = SupervisorConfig(
        url=server.url,
        health_check_interval=0.2,
        health_check_timeout=0.2,
        backoff_base=0.02,
        backoff_cap=0.2,
    )
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        sup = app.state.supervisor
        await sup.wait_for(ConnectionState.READY, timeout=5)
        response = await client.get("/ready")
        assert response.status_code == 200
        assert (await client.get("/hits")).json() == {"hits": 1}
        metrics = (await client.get("/metrics")).text
        assert 'supervisor_state{state="ready",target="redis"} 1.0' in metrics
        assert 'supervisor_outages_total{cause="server_restart",target="redis"} 0.0' in metrics
        server.kill()
        await sup.wait_for(ConnectionState.RECONNECTING, timeout=5)
        response = await client.get("/ready")
        assert response.status_code == 503
        assert response.json()["targets"]["redis"]["state"] == "reconnecting"
        server.start()
        await sup.wait_for(ConnectionState.READY, timeout=10)
        assert (await client.get("/ready")).status_code == 200
    assert sup.state is ConnectionState.CLOSED


async def test_asgi_example_takes_the_environment_and_keeps_details_from_clients(
    server, monkeypatch, caplog
):
    """The example app is configured by SUPERVISOR_* variables and logs which Redis it
    uses; when Redis is unavailable, /hits answers a short reason and the detail (target,
    cause, fix) goes to the log, not to the HTTP client."""
    from examples.starlette_app import create_app

    monkeypatch.setenv("SUPERVISOR_URL", server.url)
    monkeypatch.setenv("SUPERVISOR_OFFLINE", "fail_fast")
    app = create_app()
    transport = httpx.ASGITransport(app=app)
    caplog.set_level("INFO", logger="examples.starlette_app")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        sup = app.state.supervisor
        assert sup.config.offline == "fail_fast"
        assert sup.config.command_deadline == 2.0  # a request's budget, not a job's 10 s
        await sup.wait_for(ConnectionState.READY, timeout=5)
        assert (await client.get("/hits")).json() == {"hits": 1}
        metrics = (await client.get("/metrics")).text
        assert 'supervisor_state{state="ready",target="redis"} 1.0' in metrics
        assert 'supervisor_outages_total{cause="server_restart",target="redis"} 0.0' in metrics
        server.kill()
        await sup.wait_for(ConnectionState.RECONNECTING, timeout=5)
        caplog.clear()
        response = await client.get("/hits")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert str(server.port) not in response.text
        assert response.json() == {
            "error": "storage unavailable, try again later",
            "cause": "network",
        }
    # one line, with the detail and without a traceback (an outage is no bug of the app)
    records = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info is None, records
    assert "GET /hits" in records[0].getMessage() and str(server.port) in records[0].getMessage()


async def test_unavailable_middleware_answers_503_for_any_asgi_app(caplog):
    """The handler's twin for an ASGI app without Starlette's exception handlers."""
    from supervisor.asgi import UnavailableMiddleware

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        raise Unavailable("Redis 127.0.0.1:1/0 is reconnecting", cause=Cause.NETWORK)

    transport = httpx.ASGITransport(app=UnavailableMiddleware(app, retry_after=3))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/anything")
    assert response.status_code == 503 and response.headers["retry-after"] == "3"
    assert response.json()["cause"] == "network" and "127.0.0.1" not in response.text
    assert [r.exc_info for r in caplog.records if "Redis unavailable" in r.getMessage()] == [None]


def test_http_listener_outlives_more_idle_clients_than_descriptors(shared_server, tmp_path):
    """`run` with 40 file descriptors and 80 idle clients on its HTTP port: accepting
    pauses instead of failing (EMFILE is logged), idle clients are cut after the
    exchange deadline, and the process goes on supervising and serving /health."""
    import resource

    port = free_port()
    config = tmp_path / "service.toml"
    config.write_text(f'[http]\nport = {port}\n\n[targets.cache]\nurl = "{shared_server.url}"\n')
    with python_m("run", "--config", str(config)) as child:
        resource.prlimit(child.proc.pid, resource.RLIMIT_NOFILE, (40, 40))
        wait_http(port, "/health", 200)
        idle = []
        try:
            for _ in range(80):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            wait_http(port, "/health", 200)
            assert child.proc.poll() is None
        finally:
            for sock in idle:
                sock.close()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /health HTTP/1.1\n\n")  # bare LF line endings
            answer = b""
            for _ in range(100):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:100]
        child.send_signal(signal.SIGTERM)
        out, err = child.finish(BOUND)
    assert child.returncode == 0, err[-2000:]
    assert "http_accept_failed" in out + err
    assert "out of file descriptors" in out + err


async def test_http_handler_failure_is_a_500_not_the_end():
    """A handler that raises answers 500, logged; the listener serves the next request."""
    from supervisor.service.http import Response, head_complete, serve

    calls = []

    def handler(path: str) -> Response:
        calls.append(path)
        if path == "/boom":
            raise RuntimeError("handler bug")
        return Response(200, b"{}")

    assert head_complete(b"GET / HTTP/1.1\n\n") and head_complete(b"GET / HTTP/1.1\r\n\r\n")
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, "127.0.0.1", 0, handler)
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/boom")).status_code == 500
            assert (await client.get(f"http://127.0.0.1:{port}/ok")).status_code == 200
        tg.cancel_scope.cancel()
    assert calls == ["/boom", "/ok"]


def _scrape(port: int) -> dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    code, text = get(port, "/metrics")
    assert code == 200
    out = {}
    for family in text_string_to_metric_families(text):
        samples = {tuple(sorted(s.labels.items())): s.value for s in family.samples}
        for sample in family.samples:
            out[sample.name] = (family.type, samples)
    return out


def test_metrics_follow_prometheus_conventions_and_count_a_restart_as_one(server, tmp_path):
    """A real scrape: counters are counters named ``_total``, every cause is there at 0
    from the first scrape, the server facts carry redis_exporter's names, and a restart is
    counted once, as ``server_restart`` (the cause concluded), not as ``network``."""
    from supervisor.integrations.prometheus import METRICS

    port = free_port()
    config = tmp_path / "service.toml"
    config.write_text(
        f'[http]\nport = {port}\n[monitor]\ninterval = 0.2\n[targets.main]\nurl = "{server.url}"\n'
        "health_check_interval = 0.2\nhealth_check_timeout = 0.2\nclient_cache = true\n"
    )
    main = (("target", "main"),)
    with python_m("run", "--config", str(config)) as child:
        wait_http(port, "/health", 200)
        deadline = time.monotonic() + BOUND
        while not {"redis_config_maxclients", "supervisor_cache_staleness_seconds"} <= set(
            first := _scrape(port)
        ):
            assert time.monotonic() < deadline, "no sample of the server, or no proven cache"
            time.sleep(0.05)
        expected = set(METRICS) - {"supervisor_node_up"}  # cluster targets only
        assert set(first) == expected, set(first) ^ expected
        for name in expected:
            kind = METRICS[name][0]
            assert first[name][0] == kind, (name, first[name][0])
            assert kind != "counter" or name.endswith("_total"), name
        flushes = first["supervisor_cache_flushes_total"][1]
        assert flushes[(("cause", "stream_lost"), *main)] == 0.0, flushes
        outages = first["supervisor_outages_total"][1]
        assert outages[(("cause", "server_restart"), *main)] == 0.0
        assert outages[(("cause", "network"), *main)] == 0.0
        assert first["redis_rejected_connections_total"][0] == "counter"
        server.kill()
        wait_http(port, "/health", 503)
        server.start()
        wait_http(port, "/health", 200)
        after = _scrape(port)["supervisor_outages_total"][1]
        assert after[(("cause", "server_restart"), *main)] == 1.0, after
        assert sum(after.values()) == 1.0, after
        assert _scrape(port)["supervisor_pool_generations_total"][1][main] == 2.0
        child.send_signal(signal.SIGTERM)
        _, err = child.finish(BOUND)
    assert child.returncode == 0, err[-2000:]
