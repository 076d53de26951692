"""The application's own modules, named by ``JOBS_IMPORTS``: where its job types (and, for
workers, its handlers) are declared.

Every process that needs the application's job types imports them through
:func:`import_user_modules`: worker processes (pgjobs/worker/setup.py) and every `jobctl` command
that looks job types up (worker, maintenance, enqueue, jobs). Like ``python -m``, it puts the
current directory first on ``sys.path``, so ``JOBS_IMPORTS=myapp.jobs`` finds ``./myapp/jobs.py``
whichever way the process was started (`jobctl` is a console script, whose ``sys.path`` does not
hold the current directory).
"""

from __future__ import annotations

import importlib
import os
import re
import sys

from pgjobs.db.errors import ConfigurationError
from pgjobs.settings import get_settings

_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def user_module_names() -> list[str]:
    """The module names ``JOBS_IMPORTS`` lists, in order."""
    return [name for name in (n.strip() for n in get_settings().imports.split(",")) if name]


def import_user_modules() -> list[str]:
    """Import every module ``JOBS_IMPORTS`` names, from the current directory first; return
    their names. A module that cannot be found is a ConfigurationError saying where it was
    looked for; an error raised by the module's own code propagates as it is (its traceback is
    what its author needs)."""
    names = user_module_names()
    if not names:
        return names
    here = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == here for entry in sys.path):
        sys.path.insert(0, here)
    for name in names:
        if not _MODULE_NAME.fullmatch(name):
            raise ConfigurationError(
                f"JOBS_IMPORTS: {name[:100]!r} is not a module name (use dotted names such as "
                "myapp.jobs, separated by commas)"
            )
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not _is_part_of(exc.name, name):
                raise  # the module was found; something it imports was not
            raise ConfigurationError(
                f"JOBS_IMPORTS: cannot import {name!r} (no module named {exc.name!r} in {here} "
                "or on the Python path): run the command from the directory that holds it, "
                "or add that directory to PYTHONPATH"
            ) from None
    return names


def _is_part_of(missing: str, wanted: str) -> bool:
    """Whether ``missing`` is ``wanted`` or one of its parent packages."""
    return wanted == missing or wanted.startswith(missing + ".")
