"""The ``edgenet`` command group and its error policy.

Every user error exits 2 with one line ``edgenet: error: ...`` on stderr: an
``EdgenetError`` from the library, and click's own usage errors (a missing file, a bad
choice, an unknown option). A bug in edgenet is one line and exit 1; ``--debug`` (accepted
anywhere on the command line, or ``EDGENET_DEBUG=1``) adds the traceback. Output into a
closed pipe (``edgenet info m.edgenet | head -2``) ends the command quietly with status 0.
"""
from __future__ import annotations

import errno
import os
import sys
import traceback

import click

from ..errors import EdgenetError

PROG = "edgenet"
DEBUG_FLAG = "--debug"


def error_line(msg: str) -> str:
    return f"{PROG}: error: " + " ".join(str(msg).split())


def warn(msg: str) -> None:
    """One line ``edgenet: warning: ...`` on stderr."""
    click.echo(f"{PROG}: warning: " + " ".join(str(msg).split()), err=True)


def _split_debug(args):
    """(args without --debug, whether it was given); only before a ``--`` terminator."""
    out, debug, literal = [], False, False
    for a in args:
        if not literal and a == DEBUG_FLAG:
            debug = True
            continue
        if a == "--":
            literal = True
        out.append(a)
    return out, debug


def _silence_stdout():
    """After EPIPE: point stdout at devnull so the interpreter's final flush cannot fail
    again (the recipe of the Python docs, 'Note on SIGPIPE')."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (a test runner)
        pass


def _is_epipe(e: BaseException) -> bool:
    return isinstance(e, BrokenPipeError) or (isinstance(e, OSError) and
                                              e.errno == errno.EPIPE)


class EdgenetGroup(click.Group):
    """A click group whose ``main`` applies the error policy of the module docstring."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        args = list(sys.argv[1:] if args is None else args)
        args, debug = _split_debug(args)
        debug = debug or bool(os.environ.get("EDGENET_DEBUG"))
        if debug:
            args = [DEBUG_FLAG] + args  # parsed by the group: ctx.params["debug"]
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        code = 0
        try:
            rv = super().main(args, PROG, complete_var, standalone_mode=False,
                              **extra)
            code = rv if isinstance(rv, int) else 0
            sys.stdout.flush()
        except click.exceptions.NoArgsIsHelpError as e:  # bare `edgenet`: the help
            click.echo(e.ctx.get_help())
            code = 0
        except click.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(error_line(e.format_message()) + hint, err=True)
            code = 2
        except click.ClickException as e:
            click.echo(error_line(e.format_message()), err=True)
            code = e.exit_code
        except click.Abort:
            click.echo(error_line("interrupted"), err=True)
            code = 130
        except OSError as e:
            if not _is_epipe(e):
                raise
            _silence_stdout()
            code = 0
        sys.exit(code)

    def invoke(self, ctx):
        """Run the subcommand; turn what it raises into one line and an exit status."""
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except EdgenetError as e:
            if debug:
                traceback.print_exc()
            click.echo(error_line(e), err=True)
            raise click.exceptions.Exit(2) from None
        except KeyboardInterrupt:
            click.echo(error_line("interrupted"), err=True)
            raise click.exceptions.Exit(130) from None
        except MemoryError:
            click.echo(error_line("out of memory"), err=True)
            raise click.exceptions.Exit(1) from None
        except OSError as e:
            if not _is_epipe(e):
                _internal_error(e, debug)
            _silence_stdout()
            raise click.exceptions.Exit(0) from None
        except Exception as e:  # a bug in edgenet: still one line unless --debug
            _internal_error(e, debug)


def _internal_error(e, debug):
    if debug:
        traceback.print_exc()
    click.echo(error_line(f"internal error: {type(e).__name__}: {e} (rerun with --debug "
                          f"for details)"), err=True)
    raise click.exceptions.Exit(1) from None


@click.group(cls=EdgenetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True,
              help="Show tracebacks for errors (accepted anywhere on the command line).")
@click.version_option(package_name="edgenet", help="Show the version and exit.")
def main(debug):
    """edgenet: run ternary/quinary CNNs compiled by Numba, with no DL framework."""


DEVICES = ["cpu", "cuda", "reference"]
DEVICE_HELP = "Where to run: cpu, cuda (an NVIDIA GPU) or reference (plain NumPy, slow)."
THREADS_HELP = "Kernel threads. [default: all cores]"
POLICY_HELP = "Keep weights expanded (fastest) or bit-packed (least memory). [default: packed]"
ACTIVATIONS_HELP = ("Activation precision: auto = int8 only for the convs whose int8 kernel is "
                    "faster on this CPU. [default: auto when the file is calibrated, else f32]")
