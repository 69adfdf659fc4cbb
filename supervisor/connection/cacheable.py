"""Which commands the client-side cache may answer, and which keys a write changes.

Reads are an explicit allow-list: each depends only on the keys it names, and
on nothing that changes with time alone (so not ``TTL``, ``RANDOMKEY``,
``SRANDMEMBER``). A write through ``sup.client`` drops the entries of the keys
it names at once; a command whose keys cannot be told from its arguments
(scripts, functions, module commands) holds every hit back until the
invalidation stream has caught up with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ("CACHEABLE", "FLUSHES", "keys_written")

_FIRST_KEY_READS = """
    GET GETRANGE SUBSTR STRLEN GETBIT BITCOUNT BITPOS TYPE
    HGET HMGET HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN
    LRANGE LLEN LINDEX LPOS
    SMEMBERS SISMEMBER SMISMEMBER SCARD
    ZRANGE ZRANGEBYSCORE ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX ZREVRANGE
    ZCARD ZSCORE ZMSCORE ZRANK ZREVRANK ZCOUNT ZLEXCOUNT
""".split()

CACHEABLE: Final[frozenset[str]] = frozenset({*_FIRST_KEY_READS, "EXISTS", "MGET"})
"""Read commands served from the cache, as redis-py spells them in ``execute_command``."""

FLUSHES: Final[frozenset[str]] = frozenset({"FLUSHDB", "FLUSHALL", "SWAPDB"})
"""Commands after which no entry stands."""

_ALL_KEYS = frozenset({"DEL", "UNLINK", "TOUCH", "WATCH"})
_ALL_BUT_LAST = frozenset({"BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"})
_PAIRS = frozenset({"MSET", "MSETNX"})
_TWO_KEYS = frozenset(
    {"RENAME", "RENAMENX", "COPY", "SMOVE", "LMOVE", "RPOPLPUSH", "BLMOVE", "BRPOPLPUSH"}
)
_NO_KEYS = frozenset(
    """
    PING ECHO TIME INFO CLIENT CONFIG DBSIZE SELECT AUTH HELLO QUIT RESET COMMAND
    PUBLISH SPUBLISH SLOWLOG LATENCY MEMORY ROLE LASTSAVE BGSAVE SAVE BGREWRITEAOF
    ACL WAIT WAITAOF SCRIPT FUNCTION MULTI EXEC DISCARD UNWATCH READONLY READWRITE
    """.split()
)


def keys_written(name: str, args: Sequence[object]) -> Sequence[object] | None:
    """The keys a command may change: ``()`` for none, None when they cannot be
    told from its arguments."""
    if name in _NO_KEYS:
        return ()
    if name in _ALL_KEYS:
        return args[1:]
    if name in _ALL_BUT_LAST:
        return args[1:-1]
    if name in _PAIRS:
        return args[1::2]
    if name in _TWO_KEYS:
        return args[1:3]
    if name == "BITOP":
        return args[2:3]
    if name.startswith(("EVAL", "FCALL")) or name not in _FIRST_KEY_WRITES:
        return None
    return args[1:2]


_FIRST_KEY_WRITES = frozenset(
    """
    SET SETNX SETEX PSETEX GETSET GETDEL GETEX APPEND SETRANGE SETBIT BITFIELD
    INCR INCRBY INCRBYFLOAT DECR DECRBY EXPIRE PEXPIRE EXPIREAT PEXPIREAT PERSIST
    HSET HSETNX HMSET HDEL HINCRBY HINCRBYFLOAT HEXPIRE HPEXPIRE HEXPIREAT HPEXPIREAT
    HPERSIST HGETDEL HGETEX HSETEX
    LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LSET LREM LTRIM LINSERT
    SADD SREM SPOP SINTERSTORE SUNIONSTORE SDIFFSTORE
    ZADD ZREM ZINCRBY ZPOPMIN ZPOPMAX ZREMRANGEBYSCORE ZREMRANGEBYRANK ZREMRANGEBYLEX
    ZUNIONSTORE ZINTERSTORE ZDIFFSTORE ZRANGESTORE
    PFADD PFMERGE XADD XDEL XTRIM XACK XCLAIM XAUTOCLAIM XGROUP XSETID
    GEOADD GEOSEARCHSTORE RESTORE
    """.split()
)
