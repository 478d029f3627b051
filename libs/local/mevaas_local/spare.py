"""A warm spare of a service process: ``python -m mevaas_local.spare <module>`` does the service's
imports (seconds of CPU for web3, numpy, grpc and the generated protos: most of a cold start),
then waits for a line on its stdin and runs ``python -m <module>`` in the same process. The
supervisor of `mevaas up` keeps one per service, so a crashed service is replaced by a process
that only has to connect and bind. End of input (the fleet is gone) exits quietly.
"""

from __future__ import annotations

import importlib
import importlib.util
import runpy
import sys


def main() -> None:
    module = sys.argv[1]
    heavy = f"{module}.server"
    importlib.import_module(heavy if importlib.util.find_spec(heavy) is not None else module)
    if not sys.stdin.readline():
        return
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
