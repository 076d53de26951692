"""The worker's Dramatiq application: ``dramatiq pgjobs.worker.app`` (or ``jobctl worker``)
loads this module in every worker process; it configures logging (again, in a process forked by
``jobctl worker``: its stderr is now Dramatiq's pipe) and installs the broker and its actors.

The garbage collector is paused while the library loads: its passes over the objects that
importing creates took a sixth of a worker's start-up (about 90 ms of 530). Those objects live as
long as the process, so they are then frozen (``gc.freeze``): the collector's passes while jobs
run no longer walk them either.
"""

import gc

_collecting = gc.isenabled()
gc.disable()
try:
    from pgjobs.logs import configure_logging
    from pgjobs.worker.setup import build_broker

    configure_logging(force=True)  # a process `jobctl worker` forked inherits its set-up
    broker = build_broker()
finally:
    gc.freeze()
    if _collecting:
        gc.enable()
