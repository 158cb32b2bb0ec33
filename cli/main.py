"""The ``hwnas`` typer app. Each room's commands live in their own module and register here.

Heavy imports (torch, onnx) happen inside commands, so that ``hwnas profile run-bundle`` runs
on a device with only numpy and onnxruntime installed.
"""

from __future__ import annotations

import errno
import json
import sys
from enum import Enum

import typer

from hwnas.cli.common import Interrupted, err, out

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import ClickException as _ClickException
from hwnas.errors import UserError


def _flags_without_metavar() -> None:
    """Show boolean flags as ``--resume``, not ``--resume <bool>``.

    Typer's plain help skips the value type of a flag, but its rich help (used whenever rich is
    installed, as here) prints ``display_type_rich()`` for every option; since typer vendors
    click and names types ``<bool>``, the old skip of click's ``BOOLEAN`` metavar no longer
    matches. Returning no type for flags restores the plain form; older typers lack the method
    and skip ``BOOLEAN`` themselves.
    """
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_hwnas_flags", False):
        return

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        if getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None
        return shown(self, ctx)

    display_type_rich._hwnas_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_metavar()

app = typer.Typer(
    name="hwnas",
    help="Hardware-aware neural architecture search: profile a device, search under a latency budget, export INT8 ONNX.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Hardware-aware neural architecture search: profile a device, search under a latency budget, export INT8 ONNX."""


class ListWhat(str, Enum):
    spaces = "spaces"
    backends = "backends"
    strategies = "strategies"
    evaluators = "evaluators"
    baselines = "baselines"
    profiles = "profiles"
    datasets = "datasets"


@app.command("list")
def list_cmd(
    what: ListWhat = typer.Argument(..., help="what to list"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """List the registered spaces, latency backends, search strategies, accuracy evaluators, baselines, reference profiles or datasets."""
    from rich.table import Table

    rows: list[dict] = []
    if what == ListWhat.spaces:
        from hwnas.space import SPACES, get_space

        for name in SPACES.names():
            space = get_space(name)
            rows.append({"name": name, "input_shape": list(space.input_shape), "size": space.size(),
                         "description": SPACES.help(name)})
    elif what == ListWhat.backends:
        from hwnas.latency.backends import available_backends

        rows = available_backends()
    elif what == ListWhat.strategies:
        from hwnas.search import STRATEGIES, list_strategies
        from hwnas.search.oneshot import METHODS, MIXED_OP_SPACES

        rows = [{"name": n, "kind": "ask/tell", "spaces": "all", "description": STRATEGIES.help(n)} for n in list_strategies()]
        rows += [{"name": n, "kind": "oneshot", "spaces": ", ".join(MIXED_OP_SPACES), "description": d}
                 for n, d in sorted(METHODS.items())]
    elif what == ListWhat.evaluators:
        from hwnas.accuracy import describe_evaluators

        rows = [{"name": n, "description": d} for n, d in describe_evaluators().items()]
    elif what == ListWhat.baselines:
        from hwnas.compare.zoo import describe_baselines

        rows = describe_baselines()
    elif what == ListWhat.profiles:
        from hwnas.latency.reference import describe_profiles

        rows = describe_profiles()
    elif what == ListWhat.datasets:
        from hwnas.data import DATASETS, list_datasets

        rows = [{"name": n, "description": DATASETS.help(n)} for n in list_datasets()]
    if as_json:
        for r in rows:
            out.print(json.dumps(r), markup=False)
        return
    if not rows:
        err.print(f"no {what.value} are registered", markup=False)
        return
    table = Table(title=what.value)
    for key in rows[0]:
        table.add_column(key)
    for r in rows:
        table.add_row(*(str(v) for v in r.values()))
    out.print(table)


def _register_commands() -> None:
    from hwnas.cli import latency_cmds

    latency_cmds.register(app)
    from hwnas.cli import search_cmds

    search_cmds.register(app)
    from hwnas.cli import accuracy_cmds

    accuracy_cmds.register(app)
    from hwnas.cli import export_cmds

    export_cmds.register(app)
    from hwnas.cli import compare_cmds

    compare_cmds.register(app)


_register_commands()


_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input becomes one line on stderr and exit code 2."""
    try:
        # without standalone mode, click returns the code of typer.Exit(code) instead of raising
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except UserError as e:
        err.print(f"error: {e}", markup=False)
        sys.exit(2)
    except OSError as e:  # a full disk, a read-only or forbidden location: one line, not a traceback
        if e.errno not in _STORAGE_ERRNOS:
            raise
        where = f" ({e.filename})" if e.filename else ""
        err.print(f"error: {e.strerror or e}{where}; free some space or choose another location (what was finished "
                  f"is kept: files are replaced whole, and the commands that resume go on with --resume)", markup=False)
        sys.exit(2)
    except KeyboardInterrupt as e:
        if not isinstance(e, Interrupted):  # an Interrupted one has said what it left
            err.print("interrupted", markup=False)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted", markup=False)
        sys.exit(130)
    except _ClickException as e:  # usage errors (unknown option, bad value): one line, exit 2
        if type(e).__name__ == "NoArgsIsHelpError":  # typer already printed the help
            sys.exit(0)
        err.print(f"error: {e.format_message()}", markup=False)
        sys.exit(2)
    sys.exit(0)


if __name__ == "__main__":
    main()
