"""``python -m supervisor run|diagnose|demo``.

Exit codes: 0 clean stop, 1 a serious finding or a fatal error, 2 bad
configuration or (for ``diagnose``) no connection.
"""

from __future__ import annotations

import argparse
import sys

import anyio

from supervisor.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    from supervisor._version import __version__

    parser = argparse.ArgumentParser(
        prog="python -m supervisor",
        description="Supervise Redis (run), inspect one Redis (diagnose), or watch the "
        "supervisor meet the common faults on a throwaway Redis (demo). Exit codes: 0 clean "
        "stop, 1 a serious finding or a fatal error, 2 bad configuration or (for diagnose) "
        "no connection.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="supervise the targets of a config file")
    run_parser.add_argument("--config", help="TOML file (default: redis://127.0.0.1:6379/0)")
    run_parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="where /health and /metrics listen, e.g. 0.0.0.0:9121 (else $SUPERVISOR_LISTEN, "
        "else the file's [http], else 127.0.0.1:9121)",
    )
    run_parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="the least severe log lines written (default info; debug adds every server sample)",
    )
    run_parser.add_argument(
        "--json",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="JSON log lines (default: when stdout is not a terminal)",
    )
    diagnose_parser = commands.add_parser("diagnose", help="inspect one Redis and print findings")
    diagnose_parser.add_argument(
        "url", nargs="?", help="default: $SUPERVISOR_URL, else redis://127.0.0.1:6379/0"
    )
    diagnose_parser.add_argument(
        "--password-file",
        metavar="FILE",
        help="read the password from FILE's first line (else $SUPERVISOR_PASSWORD_FILE, "
        "$SUPERVISOR_PASSWORD, or the URL's): keeps it out of ps and shell history",
    )
    diagnose_parser.add_argument("--json", action="store_true", help="print JSON")
    diagnose_parser.add_argument(
        "--window",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="sample the server's counters twice, this far apart (default 1): what grows now",
    )
    demo_parser = commands.add_parser(
        "demo", help="inject the seed's faults into a throwaway Redis"
    )
    demo_parser.add_argument("--quick", action="store_true", help="shorter waits (for tests)")
    args = parser.parse_args(argv)

    if args.command == "run":
        return _run(args.config, args.json, args.listen, args.log_level)
    if args.command == "diagnose":
        from supervisor.service.diagnose import diagnose_main

        return diagnose_main(
            args.url, as_json=args.json, password_file=args.password_file, window=args.window
        )
    from supervisor.service.demo import demo_main

    return demo_main(quick=args.quick)


def _run(
    path: str | None, json: bool | None, listen: str | None = None, level: str = "info"
) -> int:
    import logging

    from supervisor.service.config import ServiceConfig
    from supervisor.service.logconfig import configure_logging
    from supervisor.service.run import run

    try:
        config = ServiceConfig.from_file(path) if path else ServiceConfig.default()
        config = config.listening(listen, "--listen")
    except ConfigError as exc:
        print(f"supervisor: bad configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(json=json, level=logging.getLevelName(level.upper()))
    anyio.run(run, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
