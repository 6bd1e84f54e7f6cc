"""`rlaunch submit`: build the job spec (file < flags), validate, render, then submit or print."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click

from launcher.backends import BACKENDS
from launcher.spec import JobSpec

DEVICE_FLAGS = {"gpus": "gpu", "ascend": "ascend", "cpus": "cpu"}


def parse_pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    """`KEY=VALUE` strings -> dict, with one clear error for a value without `=`."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} must look like KEY=VALUE", param_hint=flag)
        pairs[key] = value
    return pairs


def parse_option_value(text: str) -> Any:
    """`--opt` values: YAML scalars/lists (60 -> int, true -> bool), anything else a string."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, list)) else text


def build_spec(params: dict[str, Any]) -> JobSpec:
    """The job spec from an optional job file overlaid by the flags that were given."""
    spec = JobSpec.from_yaml(params["file"]) if params["file"] else JobSpec()
    kinds = [flag for flag in DEVICE_FLAGS if params[flag] is not None]
    if len(kinds) > 1:
        raise click.UsageError(
            " and ".join(f"--{k}" for k in kinds) + " cannot be used together: pick one device kind"
        )
    changes: dict[str, Any] = {}
    if kinds:
        changes["device_kind"] = DEVICE_FLAGS[kinds[0]]
        changes["devices_per_node"] = params[kinds[0]]
        if DEVICE_FLAGS[kinds[0]] != "ascend":
            changes["device_ids"] = None
    if params["ascend_devices"]:
        from launcher.ranktable import RankTableError, parse_device_range

        try:
            changes["device_ids"] = parse_device_range(params["ascend_devices"])
        except RankTableError as err:
            raise click.BadParameter(str(err), param_hint="--ascend-devices") from None
    for flag in (
        "name", "task", "backend", "nodes", "image", "data_dir", "output_dir", "config",
        "time", "partition", "account", "qos", "constraint", "max_restarts", "master_port",
    ):
        if params[flag] is not None:
            changes["time_limit" if flag == "time" else flag] = params[flag]
    if params["set_"]:
        changes["overrides"] = [*spec.overrides, *params["set_"]]
    if params["arg"]:
        changes["args"] = [*spec.args, *params["arg"]]
    if params["env"]:
        changes["env"] = {**spec.env, **parse_pairs(params["env"], "--env")}
    if params["scheduler_arg"]:
        changes["scheduler_args"] = [*spec.scheduler_args, *params["scheduler_arg"]]
    if params["opt"]:
        options = {k: parse_option_value(v) for k, v in parse_pairs(params["opt"], "--opt").items()}
        changes["backend_options"] = {**spec.backend_options, **options}
    return spec.replace(**changes)


@click.command()
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), help="Where to run (default local).")
@click.option("--gpus", type=int, help="GPUs per node (one rank each).")
@click.option("--ascend", type=int, help="Ascend cards per node: 1, 2, 4 or 8.")
@click.option("--cpus", type=int, help="CPU ranks per node (local default: 1).")
@click.option("--ascend-devices", help="Which Ascend cards, e.g. 4-7 (default 0..N-1).")
@click.option("--nodes", type=int, help="Number of nodes (default 1).")
@click.option("--name", help="Job name: lowercase letters, digits, '-' (default resnest).")
@click.option("--task", type=click.Choice(["train", "eval", "export"]), help="Default train.")
@click.option("--data-dir", help="Data set folder with train/ and val/.")
@click.option("--output-dir", help="Checkpoints, metrics and eval.json go here.")
@click.option("--config", help="Training config YAML.")
@click.option("--set", "set_", multiple=True, metavar="KEY=VALUE", help="Config override.")
@click.option("--arg", multiple=True, help="Extra argument for the task's entry point.")
@click.option("--file", "file", type=click.Path(dir_okay=False), help="YAML job file.")
@click.option("--image", help="Container image (container backends).")
@click.option("--time", help="Time limit (Slurm syntax, e.g. 02:00:00).")
@click.option("--partition", help="Scheduler partition.")
@click.option("--account", help="Scheduler account.")
@click.option("--qos", help="Scheduler QOS.")
@click.option("--constraint", help="Node feature constraint.")
@click.option("--env", multiple=True, metavar="KEY=VALUE", help="Environment of the ranks.")
@click.option("--scheduler-arg", multiple=True, help="Extra scheduler option, e.g. --exclusive.")
@click.option("--max-restarts", type=int, help="Requeues after preemption (default 3).")
@click.option("--master-port", type=int, help="Port of the msrun scheduler.")
@click.option("--opt", multiple=True, metavar="KEY=VALUE", help="Backend-specific option.")
@click.option("--dry-run", is_flag=True, help="Print what would be submitted; submit nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
def submit(**params: Any) -> None:
    """Submit a job; the job id is the last line of stdout (messages go to stderr)."""
    from launcher.backends import UnknownBackendError, get_backend
    from launcher.backends.base import BackendError
    from launcher.spec import SpecError
    from launcher.store import JobStore

    store = JobStore()
    try:
        spec = build_spec(params)
        backend = get_backend(spec.backend)
        # prepare() first: backends fill in defaults (e.g. k8s in-pod data/output paths).
        spec = backend.prepare(spec)
        problems = spec.problems() + backend.problems(spec)
    except (SpecError, UnknownBackendError) as err:
        raise click.UsageError(str(err)) from None
    except BackendError as err:
        raise click.ClickException(str(err)) from None
    if problems:
        raise click.UsageError("\n".join(problems))
    # The id before rendering: a backend renders once, with the names it will submit under.
    spec = spec.replace(job_id=store.new_job_id(spec.name))
    rendered = backend.render(spec)
    if params["dry_run"]:
        click.echo(rendered.dry_run_text(), nl=False)
        return

    record = store.create(spec, job_id=spec.job_id)
    job_dir = Path(record.job_dir)
    try:
        record.files = [str(p.relative_to(job_dir)) for p in rendered.write(job_dir)]
        record.backend_id = backend.submit(spec, rendered, job_dir)
    except BackendError as err:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise click.ClickException(str(err)) from None
    record.last_state = "SUBMITTED"
    store.save(record)
    click.echo(
        f"submitted {record.id} to {spec.backend} ({record.backend_id}); "
        f"follow it with: rlaunch logs -f {record.id}",
        err=True,
    )
    if params["as_json"]:
        click.echo(json.dumps(json.loads(record.to_json()), indent=2))
    else:
        click.echo(record.id)
