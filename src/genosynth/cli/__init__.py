"""The ``genosynth`` command line: a thin layer over the library.

Each command lives in its own module ``genosynth.cli.<name>`` exposing

* ``HELP`` : one-line description,
* ``add_arguments(parser)`` : its options (use :mod:`genosynth.cli.common` helpers),
* ``run(args, log) -> int`` : does the work through the library, returns the exit status,
* optionally ``log_prefix(args) -> str`` : where ``PREFIX.log`` goes when ``--out`` is a folder.

``main(argv=None)`` parses, checks the output paths (an ``--out`` that cannot be written or would
replace an input is refused before anything is written), opens ``PREFIX.log``, runs the command
and turns a :class:`~genosynth.errors.GenosynthError`, an argparse error, text that is not UTF-8
or a failed file operation on a named path into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# OpenMP threads that spin while they wait for each other make every multi-threaded torch call
# several times slower on a machine that is doing anything else (805-SNP sampling on 2 threads of
# a busy 2-core machine: 39 people/s spinning, 336 passive; benchmarks/RESULTS.md, "The auto
# default at 805 SNPs"). Set before torch is imported; a value the user exported is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from genosynth import __version__
from genosynth.cli.common import RunLog, check_outputs
from genosynth.errors import GenosynthError

# Command name -> module under genosynth.cli. Add a line here for a new command.
COMMANDS = {
    "info": "info",
    "convert": "convert",
    "simulate": "simulate",
    "train": "train",
    "sample": "sample",
    "demo": "demo",
    "evaluate": "evaluate",
    "select": "select",
}


def _load(name: str):
    try:
        return importlib.import_module(f"genosynth.cli.{COMMANDS[name]}")
    except ModuleNotFoundError as exc:
        if exc.name == f"genosynth.cli.{COMMANDS[name]}":
            return None  # command not built yet
        raise


class UsageError(GenosynthError):
    """A command line argparse refuses (unknown option, bad value, missing required option)."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (``main`` prints it and returns 2) instead of usage + exit."""

    def error(self, message: str):
        raise UsageError(f"{message}; see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="genosynth",
        description="Differentially private synthetic genotype cohorts.",
    )
    parser.add_argument("--version", action="version", version=f"genosynth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _load(name)
        if module is None:
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 user error).

    Before ``PREFIX.log`` is opened, the output paths are checked (:func:`~genosynth.cli.common.check_outputs`):
    an ``--out`` that cannot be written or would replace an input is refused with nothing written.
    """
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            where = f"genosynth {args.command}" if getattr(args, "command", None) else "genosynth"
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}; see `{where} --help`")
    except UsageError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    prefix = args._module.log_prefix(args) if hasattr(args._module, "log_prefix") else getattr(args, "out", None)
    try:
        check_outputs(args, prefix)
        log = RunLog(prefix, args.command, raw_argv, append=bool(getattr(args, "resume", False)))
        with log:
            log.options(args)
            status = args._module.run(args, log)
    except GenosynthError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:  # a reader that does not name its file (load_input's do)
        print(f"Error: an input file is not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode it as UTF-8 "
              "(e.g. iconv -f latin1 -t utf-8)", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: a bug, keep the traceback
            raise
        print(f"Error: {exc.filename}: {exc.strerror}; check the path, its permissions and the free disk space",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted: files being written were discarded (a training checkpoint already "
              "saved is kept for --resume).", file=sys.stderr)
        return 130
    return int(status or 0)


def console() -> None:
    """Entry point of the ``genosynth`` console script."""
    sys.exit(main())
