"""A process that has imported our command lines once and forks one per command.

Why: a CLI test runs the command dozens of times, and each new interpreter
spent about half a second importing the same modules (aiohttp alone builds its
TLS contexts at import) before doing a few milliseconds of work.  Forking a
process that already holds the imports keeps what the tests rely on, each
command a process of its own (its own environment, arguments, standard
streams, exit code, signals and module state, gone when it exits), and drops
the repeated start-up.  The console script itself is still started as a new
interpreter by the tests of long-running commands (``Person.start``).

Started as ``fork_server.py MODULE...`` (each with a ``main(argv)``).  Protocol,
one JSON object per line: the harness (``forked_commands``) sends ``{"module",
"argv", "env", "cwd", "stdin", "stdout", "stderr"}`` (the last three are file
paths; ``argv`` as a shell would start the command); the server
answers ``{"pid": N}`` once the child runs and ``{"code": C}`` when it ended (a
signal ``S`` gives ``128 + S``, as a shell reports it).  One command at a time.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import sys
import traceback
from typing import Any


def _child(request: dict[str, Any], channels: tuple[int, int]) -> int:
    """The command's process: what the interpreter would do around ``main``."""
    for fd in channels:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in (
        (0, request["stdin"], os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY | os.O_TRUNC),
        (2, request["stderr"], os.O_WRONLY | os.O_TRUNC),
    ):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    argv, module = list(request["argv"]), request["module"]
    # "python -m relay.cli ARGS" or the console script "e2e-recall ARGS"
    args = argv[3:] if argv[1:3] == ["-m", module] else argv[1:]
    main = importlib.import_module(module).main
    sys.argv = [argv[0], *args]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse, and anything else that exits
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # as the interpreter would print it; the harness fails on it
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return int(code)


def serve() -> None:
    """Read requests until the harness closes the pipe."""
    for module in sys.argv[1:]:  # the imports every child inherits
        importlib.import_module(module)

    # The requests and answers move to descriptors of their own, so that the
    # standard streams (never read or written here) are clean for each child.
    requests_fd, answers_fd = os.dup(0), os.dup(1)
    quiet = os.open(os.devnull, os.O_RDWR)
    os.dup2(quiet, 0)
    os.dup2(quiet, 1)
    os.close(quiet)
    requests = os.fdopen(requests_fd, "r")
    answers = os.fdopen(answers_fd, "w", buffering=1)
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 70  # EX_SOFTWARE, should _child itself fail before main
            try:
                code = _child(request, (requests_fd, answers_fd))
            finally:
                os._exit(code)
        answers.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        answers.write(json.dumps({"code": code}) + "\n")


if __name__ == "__main__":
    serve()
