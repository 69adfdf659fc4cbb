"""Which commands are safe to send again after their reply was lost.

A command that only reads gives the same effect however often it runs, so
the supervisor re-sends it once the connection is back. Anything else may
already have been applied: it surfaces as ``OutcomeUnknown`` instead.
The list follows the ``readonly`` flag of ``COMMAND INFO`` in Redis 7.
"""

from __future__ import annotations

from typing import Final

__all__ = ("READ_ONLY", "command_name", "reads_only")

READ_ONLY: Final[frozenset[str]] = frozenset(
    """
    PING ECHO TIME DBSIZE INFO LASTSAVE ROLE TYPE EXISTS TTL PTTL EXPIRETIME PEXPIRETIME
    GET MGET GETRANGE SUBSTR STRLEN GETBIT BITCOUNT BITPOS BITFIELD_RO LCS
    HGET HMGET HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN HRANDFIELD HSCAN
    LRANGE LLEN LINDEX LPOS
    SMEMBERS SISMEMBER SMISMEMBER SCARD SRANDMEMBER SINTER SINTERCARD SUNION SDIFF SSCAN
    ZRANGE ZRANGEBYSCORE ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX ZREVRANGE ZCARD
    ZSCORE ZMSCORE ZRANK ZREVRANK ZCOUNT ZLEXCOUNT ZRANDMEMBER ZSCAN ZINTER ZUNION ZDIFF
    ZINTERCARD
    XRANGE XREVRANGE XLEN XINFO XPENDING
    PFCOUNT GEOPOS GEODIST GEOHASH GEORADIUS_RO GEORADIUSBYMEMBER_RO GEOSEARCH
    SCAN KEYS RANDOMKEY DUMP OBJECT MEMORY TOUCH SORT_RO EVAL_RO EVALSHA_RO FCALL_RO
    """.split()
)


def command_name(args: tuple[object, ...]) -> str:
    """The upper-cased command name of an ``execute_command`` argument tuple."""
    first = args[0] if args else ""
    name = first.decode() if isinstance(first, bytes) else str(first)
    return name.split(" ", 1)[0].upper()


_STORES = frozenset({"SORT", "GEORADIUS", "GEORADIUSBYMEMBER"})
"""Reads unless an argument says ``STORE`` or ``STOREDIST``."""


def reads_only(name: str, args: tuple[object, ...]) -> bool:
    """Whether a command (``name`` from ``command_name``) changes no data: a read by
    ``READ_ONLY``, or one of the commands that read unless their arguments say
    otherwise (``XREAD``, ``SORT`` without ``STORE``)."""
    if name in READ_ONLY or name == "XREAD":
        return True
    if name in _STORES:
        for arg in args[1:]:
            word = arg.decode("latin-1") if isinstance(arg, bytes) else arg
            if isinstance(word, str) and word.upper() in ("STORE", "STOREDIST"):
                return False
        return True
    return False
