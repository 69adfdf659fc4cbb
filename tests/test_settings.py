"""Settings are never ignored: ``SUPERVISOR_*`` overrides reach a service file's targets,
an unknown ``SUPERVISOR_*`` name is refused with the closest one, the password follows one
rule wherever it comes from, and a service file loaded as one target's says what it is."""

from __future__ import annotations

import json
import signal

import pytest

from supervisor import ConfigError, ConnectionState, Supervisor, SupervisorConfig
from supervisor.service.config import ServiceConfig
from tests.helpers.child import python_m, run_python_m
from tests.helpers.servers import RedisServer, free_port, make_server
from tests.test_service import BOUND, ROOT, wait_http

SECRET = "s3cret-Pa55"


def _service_file(tmp_path, port: int, *targets: str) -> str:
    text = f"[http]\nport = {port}\n"
    for name in targets:
        text += f'\n[targets.{name}]\nurl = "redis://127.0.0.1:{free_port()}/0"\n'
    path = tmp_path / "service.toml"
    path.write_text(text)
    return str(path)


def test_supervisor_url_reaches_a_service_files_only_target(shared_server, tmp_path):
    """``SUPERVISOR_URL=... make run``: the service file names a port nothing listens
    on, the environment names the server, and the environment wins."""
    port = free_port()
    config = _service_file(tmp_path, port, "main")
    with python_m("run", "--config", config, env={"SUPERVISOR_URL": shared_server.url}) as child:
        body = json.loads(wait_http(port, "/health", 200))
        assert body["targets"]["main"]["target"] == f"127.0.0.1:{shared_server.port}/0"
        child.send_signal(signal.SIGTERM)
        _, err = child.finish(BOUND)
    assert child.returncode == 0, err[-2000:]


def test_a_target_named_override_wins_and_a_shared_url_is_refused(tmp_path):
    config = _service_file(tmp_path, 0, "cache", "queue")
    env = {"SUPERVISOR_CACHE__COMMAND_DEADLINE": "2", "SUPERVISOR_OFFLINE": "fail_fast"}
    service = ServiceConfig.from_file(config, env=env)
    assert service.targets["cache"].command_deadline == 2
    assert service.targets["queue"].command_deadline == 10
    assert {t.offline for t in service.targets.values()} == {"fail_fast"}
    with pytest.raises(ConfigError, match="SUPERVISOR_CACHE__URL"):
        ServiceConfig.from_file(config, env={"SUPERVISOR_URL": "redis://127.0.0.1:1/0"})
    with pytest.raises(ConfigError, match="has no target 'jobs'; its targets: cache, queue"):
        ServiceConfig.from_file(config, env={"SUPERVISOR_JOBS__URL": "redis://127.0.0.1:1/0"})


@pytest.mark.parametrize("command", ["run", "diagnose"])
def test_a_misspelled_setting_is_refused_with_the_closest_name(tmp_path, command):
    env = {"SUPERVISOR_COMMAND_DEADLNE": "1", "SUPERVISOR_ENABLED": "1"}  # the 2nd: supervisord's
    args = (
        ["run", "--config", _service_file(tmp_path, 0, "main")] if command == "run" else [command]
    )
    code, out, err = run_python_m(*args, timeout=BOUND, env=env)
    assert code == 2, (out, err)
    assert "SUPERVISOR_COMMAND_DEADLNE is not a setting" in err
    assert "did you mean SUPERVISOR_COMMAND_DEADLINE?" in err


@pytest.fixture
def protected():
    server = make_server(password=SECRET)
    yield server
    server.close()


async def test_the_password_from_the_environment_or_a_file(protected: RedisServer, tmp_path):
    url = f"redis://127.0.0.1:{protected.port}/0"
    secret_file = tmp_path / "redis-password"
    secret_file.write_text(SECRET + "\n")
    for env in (
        {"SUPERVISOR_URL": url, "SUPERVISOR_PASSWORD": SECRET},
        {"SUPERVISOR_URL": url, "SUPERVISOR_PASSWORD_FILE": str(secret_file)},
    ):
        config = SupervisorConfig.from_env(env)
        assert SECRET not in repr(config)
        async with Supervisor(config) as sup:
            await sup.wait_for(ConnectionState.READY, timeout=BOUND)
            assert await sup.client.ping()
    with pytest.raises(ConfigError, match="set it in one place") as info:
        SupervisorConfig.from_env(
            {"SUPERVISOR_URL": f"redis://:{SECRET}@127.0.0.1:1/0", "SUPERVISOR_PASSWORD": SECRET}
        )
    assert SECRET not in str(info.value)
    with pytest.raises(ConfigError, match="the url and in redis_options") as info:
        SupervisorConfig(
            url=f"redis://:{SECRET}@127.0.0.1:1/0", redis_options={"password": SECRET + "x"}
        )
    assert SECRET not in str(info.value)
    with pytest.raises(ConfigError, match=r"password_file .*No such file"):
        SupervisorConfig(password_file=str(tmp_path / "missing"))


def test_diagnose_takes_the_password_by_the_same_rule(protected: RedisServer, tmp_path):
    url = f"redis://127.0.0.1:{protected.port}/0"
    code, out, err = run_python_m(
        "diagnose",
        "--json",
        timeout=BOUND,
        env={"SUPERVISOR_URL": url, "SUPERVISOR_PASSWORD": SECRET},
    )
    assert code in (0, 1), err
    assert json.loads(out)["target"] == f"127.0.0.1:{protected.port}/0"
    assert SECRET not in out + err


def test_a_service_file_loaded_as_one_target_says_what_it_is():
    with pytest.raises(ConfigError, match="is a table of a service file") as info:
        SupervisorConfig.from_file(ROOT / "config" / "service.toml", env={})
    assert "python -m supervisor run --config" in str(info.value)


def test_supervisords_files_in_the_package_make_the_import_fail_saying_so(tmp_path):
    """supervisord's pip package is named ``supervisor`` too: installed side by side, the
    two share one directory. The import says what happened and how to fix it."""
    import shutil
    import subprocess
    import sys

    shutil.copytree(ROOT / "supervisor", tmp_path / "supervisor")
    (tmp_path / "supervisor" / "supervisord.py").write_text("# supervisord's\n")
    done = subprocess.run(
        [sys.executable, "-c", "from supervisor import Supervisor"],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert done.returncode == 1
    assert "also holds supervisord's files" in done.stderr
    assert "pip uninstall -y supervisor redis-supervisor" in done.stderr


def test_defaults_of_the_app_give_way_to_the_environment():
    config = SupervisorConfig.from_env({}, defaults={"command_deadline": 2.0})
    assert config.command_deadline == 2.0
    env = {"SUPERVISOR_COMMAND_DEADLINE": "5"}
    assert SupervisorConfig.from_env(env, defaults={"command_deadline": 2.0}).command_deadline == 5


def test_make_run_installs_the_runtime_alone():
    """``make run`` builds its own environment with the package's dependencies only: no
    test runner, linter or test servers (those are ``make test``'s)."""
    import subprocess

    plan = subprocess.run(
        ["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=BOUND
    ).stdout
    installs = [line for line in plan.splitlines() if "pip install" in line and " -e " in line]
    assert installs, plan
    assert all("[" not in line.partition(" -e ")[2] for line in installs), installs
    assert "-m supervisor run" in plan


# what Kubernetes injects for Services named "supervisor" and "supervisor-metrics"
SERVICE_LINKS = {
    "SUPERVISOR_SERVICE_HOST": "10.0.0.11",
    "SUPERVISOR_SERVICE_PORT": "9121",
    "SUPERVISOR_SERVICE_PORT_HTTP": "9121",
    "SUPERVISOR_PORT": "tcp://10.0.0.11:9121",
    "SUPERVISOR_PORT_9121_TCP": "tcp://10.0.0.11:9121",
    "SUPERVISOR_PORT_9121_TCP_PROTO": "tcp",
    "SUPERVISOR_PORT_9121_TCP_PORT": "9121",
    "SUPERVISOR_PORT_9121_TCP_ADDR": "10.0.0.11",
    "SUPERVISOR_METRICS_SERVICE_HOST": "10.0.0.12",
    "SUPERVISOR_METRICS_PORT": "tcp://10.0.0.12:9121",
}


def test_kubernetes_service_links_are_no_settings_and_typos_still_are(tmp_path):
    """A Service named supervisor… makes Kubernetes inject SUPERVISOR_* variables into
    every pod of the namespace: they are left alone; a misspelt setting is still refused."""
    config = _service_file(tmp_path, 0, "main")
    service = ServiceConfig.from_file(
        config, env={**SERVICE_LINKS, "SUPERVISOR_OFFLINE": "fail_fast"}
    )
    assert service.targets["main"].offline == "fail_fast"
    assert ServiceConfig.default(env=SERVICE_LINKS).targets["default"].target == "127.0.0.1:6379/0"
    with pytest.raises(ConfigError, match="did you mean SUPERVISOR_COMMAND_DEADLINE"):
        ServiceConfig.from_file(config, env={**SERVICE_LINKS, "SUPERVISOR_COMMAND_DEADLNE": "1"})
    # a value that is no service address keeps the name a typo of a setting
    with pytest.raises(ConfigError, match="SUPERVISOR_METRICS_PORT is not a setting"):
        ServiceConfig.from_file(config, env={"SUPERVISOR_METRICS_PORT": "9121"})


def test_the_listen_address_comes_from_the_environment_or_the_command_line(tmp_path):
    config = _service_file(tmp_path, 0, "main")
    service = ServiceConfig.from_file(config, env={"SUPERVISOR_LISTEN": "0.0.0.0:9200"})
    assert (service.http.host, service.http.port) == ("0.0.0.0", 9200)
    assert ServiceConfig.default(env={"SUPERVISOR_LISTEN": "[::]:9300"}).http.host == "::"
    with pytest.raises(ConfigError, match="SUPERVISOR_LISTEN: 'nine' is not HOST:PORT"):
        ServiceConfig.default(env={"SUPERVISOR_LISTEN": "nine"})
    port = free_port()
    with python_m("run", "--config", config, "--listen", f"127.0.0.1:{port}") as child:
        health = wait_http(port, "/health", 503)  # its target's port refuses: listening there
        assert wait_http(port, "/ready", 503) == health  # the readiness probe README names
        child.send_signal(signal.SIGTERM)
        _, err = child.finish(BOUND)
    assert child.returncode == 0, err[-2000:]
    code, _, err = run_python_m("run", "--listen", "nowhere", timeout=BOUND)
    assert code == 2 and "--listen: 'nowhere' is not HOST:PORT" in err, err


def test_the_command_line_says_its_version_and_its_help_is_plain_text():
    from supervisor import __version__

    code, out, _ = run_python_m("--version", timeout=BOUND)
    assert code == 0 and out.strip() == f"python -m supervisor {__version__}"
    for command in ([], ["run"], ["diagnose"], ["demo"]):
        code, out, err = run_python_m(*command, "--help", timeout=BOUND)
        assert code == 0, err
        assert "`" not in out, f"reStructuredText in `{' '.join(command)} --help`: {out}"


def test_the_editable_install_shows_the_package_types_to_mypy(tmp_path):
    """``make`` installs the package in editable_mode=compat: a path entry that mypy and
    IDEs follow. setuptools' default editable hook hides the package from them (mypy
    then says "Cannot find implementation" and types everything from it as Any)."""
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text("from supervisor import Supervisor\nreveal_type(Supervisor)\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "c"), "probe.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=BOUND * 8,
    )
    assert done.returncode == 0 and 'Revealed type is "def' in done.stdout, done.stdout


def _migration_guide() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Migrating from plain redis-py")
    return text[start : text.index("\n## ", start + 3)]


def test_the_migration_guide_compiles_and_its_table_holds():
    """README's guide from plain redis-py: its code compiles, and each option lands
    where its table says (a config key, redis_options, or a refusal that says so)."""
    import dataclasses

    guide = _migration_guide()
    blocks = guide.split("```python\n")[1:]
    assert len(blocks) == 2, "the guide has a before and an after"
    for block in blocks:
        compile(block.split("```", 1)[0], "README.md", "exec", flags=0x2000)  # top-level await
    keys = {f.name for f in dataclasses.fields(SupervisorConfig)}
    for same in ("socket_timeout", "socket_connect_timeout", "max_connections", "client_name"):
        assert same in keys and f"`{same}`" in guide
    assert {"tcp_keepalive_idle", "tcp_keepalive_interval", "tcp_keepalive_count"} <= keys
    for name, value in {
        "retry_on_timeout": True,
        "socket_keepalive_options": {},
        "max_connections": 5,
        "connection_pool": object(),
    }.items():
        with pytest.raises(ConfigError, match=name):
            SupervisorConfig(redis_options={name: value})
    for name, value in {
        "health_check_interval": 30,
        "protocol": 3,
        "encoding": "utf-8",
        "encoding_errors": "strict",
    }.items():
        SupervisorConfig(redis_options={name: value})
    SupervisorConfig(url="rediss://127.0.0.1:6380/0", redis_options={"ssl_ca_certs": "/ca.crt"})
