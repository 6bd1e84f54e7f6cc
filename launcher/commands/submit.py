"""`rlaunch submit`: build the job spec (file < flags), check it, render, then submit or print.

The options are generated from the spec's fields (`launcher.spec.cli_fields`): one list gives
each flag, its type (the field's annotation), its help and the name messages use for it.
Checks run in order and stop at the first stage that finds problems: types (job file and
flags), then values, then the backend's own rules, then the training config's overrides.
Nothing is written before all of them pass.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from launcher.backends import BACKENDS
from launcher.commands import user_errors
from launcher.spec import (
    DEVICE_FLAG_HELP,
    DEVICE_FLAGS,
    MAX_DEVICES_PER_NODE,
    JobSpec,
    SpecError,
    cli_fields,
    field_types,
    parse_card_list,
)

if TYPE_CHECKING:
    from launcher.backends.base import Backend


def parse_pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    """`KEY=VALUE` strings -> dict, with one clear error for a value without `=`."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} must look like KEY=VALUE", param_hint=flag)
        if key in pairs:
            raise click.BadParameter(f"{key!r} is given twice", param_hint=flag)
        pairs[key] = value
    return pairs


def _param(flag: str) -> str:
    """click's parameter name of a flag (`--scheduler-arg` -> `scheduler_arg`)."""
    return flag.lstrip("-").replace("-", "_")


def spec_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add one click option per CLI field of JobSpec, plus the device flags."""
    options = []
    for name, meta in cli_fields().items():
        hint = field_types()[name]
        shape = typing.get_origin(hint)
        kwargs: dict[str, Any] = {"help": meta.help, "metavar": meta.metavar}
        if name == "backend":
            kwargs["type"] = click.Choice(sorted(BACKENDS))
        elif meta.choices:
            kwargs["type"] = click.Choice(meta.choices)
        elif name == "device_ids":
            kwargs["type"] = str  # a card list, parsed below
        elif shape in (list, dict):
            kwargs["multiple"] = True
        elif int in (hint, *typing.get_args(hint)):
            kwargs["type"] = int
        options.append(click.option(meta.flag, _param(meta.flag), **kwargs))
        if name == "nodes":  # the device flags set the next fields, devices_per_node and kind
            options += [click.option(flag, _param(flag), type=int, help=help_text)
                        for flag, help_text in DEVICE_FLAG_HELP.items()]
    for option in reversed(options):
        func = option(func)
    return func


def build_spec(params: dict[str, Any]) -> JobSpec:
    """The job spec from an optional job file overlaid by the flags that were given.

    `origin` records which flag set each field, so messages name what the user typed."""
    spec = JobSpec.from_yaml(params["file"]) if params["file"] else JobSpec()
    origin = dict(spec.origin)
    kinds = [flag for flag in DEVICE_FLAGS if params[_param(flag)] is not None]
    if len(kinds) > 1:
        raise click.UsageError(
            " and ".join(kinds) + " cannot be used together: pick one device kind"
        )
    changes: dict[str, Any] = {}
    if kinds:
        flag = kinds[0]
        changes["device_kind"] = DEVICE_FLAGS[flag]
        changes["devices_per_node"] = params[_param(flag)]
        origin["device_kind"] = origin["devices_per_node"] = flag
        if DEVICE_FLAGS[flag] != "ascend":
            changes["device_ids"] = None
    for name, meta in cli_fields().items():
        value = params[_param(meta.flag)]
        if value is None or value == ():
            continue
        origin[name] = meta.flag
        if name == "device_ids":
            value = parse_card_list(value, meta.flag, MAX_DEVICES_PER_NODE["ascend"] - 1)
        elif name == "env":
            value = {**spec.env, **parse_pairs(value, meta.flag)}
        elif name == "backend_options":
            # Kept as text: the backend's declarations say what each value is (no YAML guess).
            parsed = parse_pairs(value, meta.flag)
            origin.update({f"backend_options.{key}": meta.flag for key in parsed})
            origin["backend_options"] = spec.origin.get("backend_options", meta.flag)
            value = {**spec.backend_options, **parsed}
        elif isinstance(value, tuple):  # repeated flags add to the job file's list
            value = [*getattr(spec, name), *value]
        changes[name] = value
    return spec.replace(**changes, origin=origin)


def config_problems(spec: JobSpec) -> list[str]:
    """The training config the job will load, checked here with the trainer's own rules
    (`resnest.config` imports only yaml), so `--set epochz=3` stops at submit, not after
    queueing. A `--config` path that does not exist here (a path inside a pod) is not read;
    the overrides are then checked against the defaults."""
    if not spec.overrides and not spec.config:
        return []
    from resnest.config import ConfigError, load_config, parse_set_overrides

    local = spec.config if spec.config and Path(spec.config).is_file() else None
    try:
        load_config(local)
    except ConfigError as err:
        return [f"{spec.label('config')} {local!r}: {str(err).splitlines()[0]}"]
    try:
        load_config(local, parse_set_overrides(spec.overrides))
    except ConfigError as err:
        return [f"{spec.label('overrides')}: {str(err).splitlines()[0]}"]
    return []


def checked_spec(params: dict[str, Any]) -> tuple[JobSpec, Backend, Any]:
    """Build, prepare and check the spec, and parse its backend's options once; SpecError with
    every problem of the first failing stage (types, then the backend's options, then values
    once the backend filled in its defaults, then its rules, then the training config)."""
    from launcher.backends import get_backend

    spec = build_spec(params)
    problems = spec.type_problems()
    if problems:
        raise SpecError(problems)
    backend = get_backend(spec.backend)
    opts, problems = backend.parse_options(spec)
    if problems:
        raise SpecError(problems)
    # prepare() before the value checks: backends fill in defaults the checks depend on (k8s:
    # in-pod data/output paths).
    spec, opts = backend.prepare(spec, opts)
    problems = spec.problems()
    if not problems:
        problems = backend.problems(spec, opts)
    if not problems:
        problems = config_problems(spec)
    if problems:
        raise SpecError(problems)
    return spec, backend, opts


@click.command()
@spec_options
@click.option("--file", "file", type=click.Path(dir_okay=False), help="YAML job file.")
@click.option("--dry-run", is_flag=True, help="Print what would be submitted; submit nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@user_errors
def submit(**params: Any) -> None:
    """Submit a job; the job id is the last line of stdout (messages go to stderr)."""
    from launcher.backends.base import BackendError
    from launcher.store import JobStore

    store = JobStore()
    spec, backend, opts = checked_spec(params)
    # The id before rendering: a backend renders once, with the names it will submit under.
    spec = spec.replace(job_id=store.new_job_id(spec.name))
    rendered = backend.render(spec, opts)
    if params["dry_run"]:
        click.echo(rendered.dry_run_text(), nl=False)
        return

    record = store.create(spec, job_id=spec.job_id)
    job_dir = Path(record.job_dir)
    try:
        record.files = [str(p.relative_to(job_dir)) for p in rendered.write(job_dir)]
        record.backend_id = backend.submit(spec, rendered, job_dir)
        record.last_state = "SUBMITTED"
        store.save(record)
    except (BackendError, OSError):
        store.discard(record)
        raise
    click.echo(
        f"submitted {record.id} to {spec.backend} ({record.backend_id}); "
        f"follow it with: rlaunch logs -f {record.id}",
        err=True,
    )
    if params["as_json"]:
        click.echo(json.dumps(json.loads(record.to_json()), indent=2))
    else:
        click.echo(record.id)
