"""The package directory must be ours alone: supervisord's pip package is named
``supervisor`` too, and pip installs the two into one directory without a word."""

from __future__ import annotations

from pathlib import Path

SUPERVISORD = ("supervisord.py", "supervisorctl.py", "rpcinterface.py", "childutils.py")
if any((Path(__file__).parent / name).exists() for name in SUPERVISORD):
    raise ImportError(
        f"{Path(__file__).parent} also holds supervisord's files: supervisord (the pip "
        "package 'supervisor') and redis-supervisor both install a package named "
        "'supervisor', so one overwrote the other's modules and neither works. Install "
        "them in separate environments (e.g. `pipx install supervisor` for supervisord), "
        "then reinstall this one: pip uninstall -y supervisor redis-supervisor && "
        "pip install redis-supervisor"
    )
