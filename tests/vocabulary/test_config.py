"""Config parsing and validation: every bad input names the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor import ConfigError, SupervisorConfig

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_work():
    """Only the URL matters; every other field has a working default."""
    config = SupervisorConfig(url="redis://127.0.0.1:6379/0")
    assert config.health_check_interval == 1.0
    assert config.offline == "wait"
    assert config.target == "127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:6379", "scheme 'http'"),
        ("localhost:6379", "scheme"),
        ("redis://:6379/0", "names no host"),
        ("redis://localhost:notaport/0", "malformed"),
        ("redis://localhost:6379/notadb", "malformed"),
        ("", "url must be"),
    ],
)
def test_bad_url_is_named(url, message):
    """A malformed URL is rejected with what is wrong and what a good one looks like."""
    with pytest.raises(ConfigError, match=message):
        SupervisorConfig(url=url)


def test_password_never_in_errors_or_repr():
    """The URL's password is redacted in repr and in error messages."""
    config = SupervisorConfig(url="redis://user:s3cret@localhost:6379/0")
    assert "s3cret" not in repr(config)
    assert config.display_url == "redis://user:***@localhost:6379/0"
    with pytest.raises(ConfigError) as info:
        SupervisorConfig(url="http://user:s3cret@localhost:6379/0")
    assert "s3cret" not in str(info.value)


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    """A typo in a key names the key, the file and the closest valid key."""
    file = tmp_path / "supervisor.toml"
    file.write_text('url = "redis://127.0.0.1:6379/0"\nhealth_check_intervall = 2\n')
    with pytest.raises(ConfigError) as info:
        SupervisorConfig.from_file(file, env={})
    message = str(info.value)
    assert "health_check_intervall" in message
    assert str(file) in message
    assert "did you mean 'health_check_interval'" in message


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"health_check_interval": 0}, "health_check_interval must be"),
        ({"backoff_base": 2.0, "backoff_cap": 1.0}, "backoff_cap"),
        ({"offline": "maybe"}, "offline must be 'wait' or 'fail_fast'"),
        ({"max_connections": 0}, "max_connections must be"),
        ({"command_deadline": "soon"}, "command_deadline must be a float"),
        ({"tcp_keepalive": "perhaps"}, "tcp_keepalive must be a bool"),
        ({"client_name": "has space"}, "client_name"),
        ({"backoff_jitter": "none"}, "backoff_jitter"),
        ({"command_deadline": float("inf")}, r"command_deadline must be .* below 86400"),
        ({"backoff_cap": float("nan")}, "backoff_cap must be"),
        ({"refused_interval": "inf"}, "refused_interval must be"),
        ({"tcp_keepalive_idle": 10**6}, "tcp_keepalive_idle must be an integer from 1 to 32767"),
        ({"refused_interval": 1e-9}, r"refused_interval must be .* from 0.001"),
        ({"health_check_timeout": 1e-9}, r"health_check_timeout must be .* from 0.001"),
        ({"server_idle_timeout": float("nan")}, "server_idle_timeout must be"),
        ({"server_idle_timeout": float("inf")}, "server_idle_timeout must be"),
        ({"server_idle_timeout": 1e308}, "server_idle_timeout must be"),
        (
            {"url": "redis://127.0.0.1:6379/0?health_check_interval=-1"},
            "health_check_interval=.* redis-py's check",
        ),
    ],
)
def test_bad_values_name_the_key(values, message):
    """Out-of-range or mistyped values are rejected by name."""
    with pytest.raises(ConfigError, match=message):
        SupervisorConfig.from_mapping({"url": "redis://127.0.0.1:6379/0", **values})


def test_env_overrides_the_file(tmp_path):
    """SUPERVISOR_<KEY> variables override the file, with types coerced."""
    file = tmp_path / "s.toml"
    file.write_text('url = "redis://127.0.0.1:6379/0"\nhealth_check_interval = 2.0\n')
    config = SupervisorConfig.from_file(
        file,
        env={
            "SUPERVISOR_HEALTH_CHECK_INTERVAL": "0.5",
            "SUPERVISOR_URL": "redis://10.0.0.1:6380/2",
            "SUPERVISOR_OFFLINE": "fail_fast",
            "SUPERVISOR_TCP_KEEPALIVE": "false",
            "SUPERVISOR_IDEMPOTENT_COMMANDS": "set, hset",
            "SUPERVISOR_TEST_BACKEND": "binary",
        },
    )
    assert config.health_check_interval == 0.5
    assert config.target == "10.0.0.1:6380/2"
    assert config.offline == "fail_fast"
    assert config.tcp_keepalive is False
    assert config.idempotent_commands == ("SET", "HSET")


def test_missing_and_invalid_files(tmp_path):
    """A missing file or broken TOML is named."""
    with pytest.raises(ConfigError, match="no such config file"):
        SupervisorConfig.from_file(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("url = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        SupervisorConfig.from_file(bad, env={})


def test_example_config_loads():
    """config/supervisor.toml, the documented example, is always valid."""
    config = SupervisorConfig.from_file(ROOT / "config" / "supervisor.toml", env={})
    assert config.target == "127.0.0.1:6379/0"


def test_pubsub_example_config_loads():
    """config/pubsub.toml is valid too."""
    config = SupervisorConfig.from_file(ROOT / "config" / "pubsub.toml", env={})
    assert config.client_name == "orders-consumer"


def test_sentinel_and_cluster_examples_load():
    """config/sentinel.toml, config/cluster.toml and config/cluster_pubsub.toml are valid."""
    sentinel = SupervisorConfig.from_file(ROOT / "config" / "sentinel.toml", env={})
    assert sentinel.target == "mymaster@sentinel/0"
    cluster = SupervisorConfig.from_file(ROOT / "config" / "cluster.toml", env={})
    assert cluster.target == "cluster@127.0.0.1:7000"
    consumer = SupervisorConfig.from_file(ROOT / "config" / "cluster_pubsub.toml", env={})
    assert consumer.cluster_nodes and consumer.client_name == "orders-consumer"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sentinels": ["127.0.0.1:26379"]}, "service_name is empty"),
        ({"service_name": "x"}, "sentinels is empty"),
        ({"sentinels": ["nope"], "service_name": "x"}, "not host:port"),
        ({"cluster_nodes": ["127.0.0.1"]}, "not host:port"),
        ({"sentinels": ["a:1"], "service_name": "x", "cluster_nodes": ["b:2"]}, "both set"),
        ({"role": "primary"}, "role must be"),
    ],
)
def test_bad_sentinel_and_cluster_settings(values, message):
    """High-availability settings are checked like any other."""
    with pytest.raises(ConfigError, match=message):
        SupervisorConfig.from_mapping(values)


def test_keepalive_options_reach_the_connection():
    """TCP keepalive idle/interval/count become socket options."""
    import socket

    kwargs = SupervisorConfig(
        tcp_keepalive_idle=60, tcp_keepalive_interval=15, tcp_keepalive_count=4
    ).connection_kwargs()
    assert kwargs["socket_keepalive"] is True
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert kwargs["socket_keepalive_options"][socket.TCP_KEEPIDLE] == 60
        assert kwargs["socket_keepalive_options"][socket.TCP_KEEPCNT] == 4


def test_errors_survive_pickling():
    """OutcomeUnknown and Unavailable cross process boundaries (multiprocessing, queues)."""
    import pickle

    from supervisor import Cause, OutcomeUnknown, Unavailable

    lost = pickle.loads(pickle.dumps(OutcomeUnknown("INCRBY", "reset")))
    assert (lost.command, lost.reason) == ("INCRBY", "reset")
    assert "INCRBY" in str(lost)
    down = pickle.loads(pickle.dumps(Unavailable("down", cause=Cause.MAXCLIENTS)))
    assert (str(down), down.cause) == ("down", Cause.MAXCLIENTS)

    from redis.exceptions import ReadOnlyError, TimeoutError

    from supervisor.errors import also_a

    timed_out = pickle.loads(pickle.dumps(also_a(OutcomeUnknown, TimeoutError)("EVAL", "t")))
    assert isinstance(timed_out, OutcomeUnknown) and isinstance(timed_out, TimeoutError)
    refused = pickle.loads(
        pickle.dumps(also_a(Unavailable, ReadOnlyError)("late", cause=Cause.READONLY))
    )
    assert isinstance(refused, ReadOnlyError) and refused.cause is Cause.READONLY


def test_url_query_options_follow_redis_py():
    """A query option that names a config key sets it (it wins in redis-py); the others
    reach redis-py's connections untouched; a contradiction is refused."""
    config = SupervisorConfig(url="redis://h:6379/0?max_connections=5&socket_timeout=2&protocol=3")
    assert config.max_connections == 5
    assert config.socket_timeout == 2.0
    kwargs = config.connection_kwargs()
    assert kwargs["protocol"] == 3
    assert "max_connections" not in kwargs
    with pytest.raises(ConfigError, match="url sets max_connections=5 but the config sets"):
        SupervisorConfig(url="redis://h:6379/0?max_connections=5", max_connections=7)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis_options": {"encodng": "utf-8"}}, "'encodng' is not a redis-py .*'encoding'"),
        ({"redis_options": {"socket_timeout": 1}}, "set socket_timeout in the config"),
        ({"redis_options": {"host": "x"}}, "put it in url"),
        ({"redis_options": {"retry_on_timeout": True}}, "decides what is re-sent"),
        ({"redis_options": {"protocol": 4}}, "protocol must be either 2 or 3"),
        ({"url": "redis://h:6379/0?retry_on_timeout=yes"}, "url: 'retry_on_timeout'"),
        ({"url": "redis://h:6379/0?bogus=1"}, "url: 'bogus' is not a redis-py"),
    ],
)
def test_redis_options_are_checked_by_name(values, message):
    with pytest.raises(ConfigError, match=message):
        SupervisorConfig(**{"url": "redis://h:6379/0", **values})


def test_redis_options_pass_through_and_stay_out_of_repr():
    """redis-py's own options pass through; their values (a password, a credential
    provider) never show in the config's repr; retries that re-send nothing are accepted."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    config = SupervisorConfig(
        redis_options={
            "encoding_errors": "replace",
            "password": "s3cret-pw",
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 30,
        }
    )
    kwargs = config.connection_kwargs()
    assert kwargs["encoding_errors"] == "replace"
    assert kwargs["health_check_interval"] == 30
    assert "s3cret-pw" not in repr(config)
    assert "password" in repr(config)


def test_no_client_name_and_no_socket_timeout(tmp_path):
    """client_name None/"" sends no CLIENT SETNAME; socket_timeout "none" waits without a
    limit, as redis-py does by default; the library is named with CLIENT SETINFO."""
    assert SupervisorConfig().connection_kwargs()["client_name"] is None
    assert SupervisorConfig(client_name="").connection_kwargs()["client_name"] is None
    file = tmp_path / "s.toml"
    file.write_text('socket_timeout = "none"\n[redis_options]\nencoding_errors = "ignore"\n')
    config = SupervisorConfig.from_file(file, env={})
    assert config.socket_timeout is None
    assert config.redis_options == {"encoding_errors": "ignore"}
    assert config.connection_kwargs()["driver_info"].formatted_name.startswith(
        "redis-py(supervisor_v"
    )
    with pytest.raises(ConfigError, match="redis_options must be a table"):
        SupervisorConfig.from_file(file, env={"SUPERVISOR_REDIS_OPTIONS": "x=1"})


def test_cluster_refuses_redis_options_its_client_cannot_take():
    """redis_options reach every cluster node connection or are refused by name: one that
    redis-py's RedisCluster does not take (socket_type) is not silently dropped."""
    from supervisor import ClusterSupervisor

    nodes = ("127.0.0.1:7000",)
    ClusterSupervisor(SupervisorConfig(cluster_nodes=nodes, redis_options={"encoding": "latin-1"}))
    with pytest.raises(ConfigError, match="'socket_type': redis-py's RedisCluster does not"):
        ClusterSupervisor(SupervisorConfig(cluster_nodes=nodes, redis_options={"socket_type": 0}))


def test_command_names_are_compared_whatever_their_case():
    """``idempotent_commands`` given in lower case to the constructor counts as given in
    upper case (it did only from a file or the environment)."""
    config = SupervisorConfig(idempotent_commands=("set", "Hset"))
    assert config.idempotent_commands == ("SET", "HSET")
