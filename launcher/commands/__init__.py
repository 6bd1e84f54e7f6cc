"""Subcommands of `rlaunch`, one module per group, loaded lazily by launcher.cli.

`user_errors` is the one place that turns the library's errors into click's: bad input
(a spec, an unknown job or backend, a bad rank-table or build flag) exits 2 with a usage line,
a failure at run time (a backend, a damaged job store or result file) exits 1. Library code
never raises click exceptions itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _error_classes() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(usage errors, runtime errors); imported here so `--help` pays for none of them."""
    from launcher.backends import UnknownBackendError
    from launcher.backends.base import BackendError
    from launcher.images import ImageBuildError, ImageUsageError
    from launcher.ranktable import RankTableError
    from launcher.spec import SpecError
    from launcher.store import JobNotFoundError, StoreError
    from launcher.sweep import SweepError
    from launcher.sweep_jobs import TrialError
    from resnest.contract import ContractError

    usage = (SpecError, UnknownBackendError, JobNotFoundError, RankTableError, ImageUsageError,
             SweepError, TrialError)
    runtime = (BackendError, StoreError, ContractError, ImageBuildError, OSError)
    return usage, runtime


def user_errors(func: F) -> F:
    """Decorate a click command: library errors become one `Error:` line, exit 2 or 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as err:
            usage, runtime = _error_classes()
            if isinstance(err, usage):
                raise click.UsageError(str(err)) from None
            if isinstance(err, runtime):
                raise click.ClickException(str(err)) from None
            raise

    return wrapper  # type: ignore[return-value]
