"""`rlaunch sweep`: one job spec (the flags of `submit`) times a search space, as one sweep.

Every trial is checked like a `submit` before anything is written or queued. Slurm gets one job
array from one sbatch call; local and Kubernetes trials are rendered into the sweep's folder and
submitted by a detached runner, at most `--max-parallel` at a time (launcher/sweep_runner.py).
Also here: the sweep views of `status`, `gather` (`cancel` and `logs` take `--trial`).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from launcher.commands import user_errors
from launcher.commands.submit import checked_spec, config_problems, spec_options
from launcher.sweep import MAX_TRIALS

if TYPE_CHECKING:
    from launcher.backends.base import Backend, RenderedJob
    from launcher.spec import JobSpec
    from launcher.store import JobRecord
    from launcher.sweep import Trial

# Trials at once when --max-parallel is not given: the local machine runs one at a time (its
# cores are shared by every rank); a scheduler decides for itself.
DEFAULT_PARALLEL: dict[str, int | None] = {"local": 1, "slurm": None, "k8s": None}


def _trial_problems(spec: JobSpec, trials: list[Trial], sweep_id: str, backend: Backend,
                    opts: Any) -> list[str]:
    """The first trial whose values fail submit's checks, as one line naming it."""
    from launcher.sweep import trial_spec

    for trial in trials:
        one = trial_spec(spec, trial, sweep_id)
        problems = one.problems() + backend.problems(one, opts) or config_problems(one)
        if problems:
            # The values are the trial's, not a flag's: name the trial instead of `--set`.
            first = problems[0].removeprefix(f"{one.label('overrides')}: ")
            return [f"{trial.describe()}: {first}"]
    return []


def _bounded_render(spec: JobSpec, trials: list[Trial], sweep_id: str, backend: Backend,
                    opts: Any) -> tuple[RenderedJob, list[str]]:
    """Every trial rendered into `trial-<i>/` (local: each with its own msrun port)."""
    from launcher.backends.base import RenderedJob
    from launcher.sweep import TRIAL_DIR_PREFIX, trial_spec

    files: dict[str, str] = {}
    streams: list[str] = []
    names: list[str] = []
    ports: set[int] = set()
    for trial in trials:
        one = trial_spec(spec, trial, sweep_id)
        if spec.backend == "local":
            one, _ = backend.prepare(one.replace(master_port=None), opts)
            while one.master_port in ports:
                one, _ = backend.prepare(one.replace(master_port=None), opts)
            ports.add(int(one.master_port or 0))
        rendered = backend.render(one, opts)
        names = list(rendered.files)
        files.update({f"{TRIAL_DIR_PREFIX}{trial.index}/{n}": t for n, t in rendered.files.items()})
        if rendered.stdout_document is not None:
            streams.append(rendered.stdout_document)
    command = [spec.python or sys.executable, "-m", "launcher.sweep_runner", "{job_dir}"]
    document = "".join(s if s.endswith("\n") else s + "\n" for s in streams) or None
    return RenderedJob(files=files, submit_command=command, stdout_document=document), names


def start_runner(job_dir: Path) -> str:
    """Start the detached runner of a bounded sweep; its pid (and start time) is kept."""
    from launcher.backends.local import _proc_stat

    with (job_dir / "runner.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "launcher.sweep_runner", str(job_dir)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    stat = _proc_stat(proc.pid)
    (job_dir / "runner.pid").write_text(f"{proc.pid} {stat[2] if stat else ''}\n")
    return f"runner {proc.pid}"


@click.command()
@spec_options
@click.option("--file", "file", type=click.Path(dir_okay=False), help="YAML job file.")
@click.option("--grid", multiple=True, metavar="KEY=V1,V2",
              help="Values of a config key; several --grid give their product.")
@click.option("--range", "ranges", multiple=True, metavar="KEY=DIST:...",
              help="A range to draw from with --random: uniform:LOW:HIGH, "
                   "loguniform:LOW:HIGH, int:LOW:HIGH or choice:A,B.")
@click.option("--random", "samples", type=click.IntRange(1, MAX_TRIALS), metavar="N",
              help="Draw N values of every --range (per grid point).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of the --random draws (same seed, same trials).")
@click.option("--max-parallel", type=click.IntRange(1, MAX_TRIALS), metavar="K",
              help="Trials running at once (default: local 1, Slurm and Kubernetes all).")
@click.option("--dry-run", is_flag=True, help="Print what would be submitted; submit nothing. "
              "Runs only the job's own checks (no folders, no cluster).")
@click.option("--no-check", is_flag=True, help="Skip the preflight checks (`rlaunch check`, run "
              "once for the whole sweep); every trial is still validated.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep record as JSON.")
@user_errors
def sweep(**params: Any) -> None:
    """Submit one job per point of a search space; the sweep id is the last line of stdout."""
    from launcher.backends.base import BackendError
    from launcher.spec import SpecError
    from launcher.store import JobStore
    from launcher.sweep import (
        parse_space,
        sweep_extra,
        swept_in_set,
        trial_spec,
        trials_document,
    )

    space = parse_space(params["grid"], params["ranges"], params["samples"], params["seed"])
    if params.get("task") not in (None, "train"):  # before the spec's checks, which are about eval
        raise SpecError([f"--task {params['task']}: a sweep trains (--task train)"])
    spec, backend, opts = checked_spec(params)
    if spec.task != "train":
        raise SpecError([f"{spec.label('task')} {spec.task}: a sweep trains (--task train)"])
    if "master_port" in spec.origin:
        raise SpecError([(f"{spec.label('master_port')} {spec.master_port}: trials that run side "
                         "by side need their own ports; leave it out of a sweep")])
    both = swept_in_set(spec, space)
    if both:
        raise SpecError([(f"{both[0]} is swept and also fixed with --set {both[0]}=...: "
                         "give it one way")])
    store = JobStore()
    sweep_id = store.new_job_id(spec.name)
    spec = spec.replace(job_id=sweep_id)
    trials = space.trials()
    problems = _trial_problems(spec, trials, sweep_id, backend, opts)
    if problems:
        raise SpecError(problems)
    if not params["no_check"]:
        from launcher.commands.check import report
        from launcher.preflight import run_checks

        # Once for the sweep: the trials share the cluster, claims, data and output root.
        # Lines go to stderr (stdout is the dry run or the sweep id); exits 2 on a failure.
        report(run_checks(spec, opts, cluster=not params["dry_run"]), as_json=False, err=True)
    parallel = params["max_parallel"] or DEFAULT_PARALLEL.get(spec.backend) or len(trials)
    parallel = min(parallel, len(trials))
    if spec.backend == "slurm":
        from launcher.backends.slurm import SlurmBackend
        from launcher.backends.slurm_array import render_array

        assert isinstance(backend, SlurmBackend)

        args = []
        for trial in trials:
            one = trial_spec(spec, trial, sweep_id)
            args.append(["--output-dir", str(one.output_dir),
                         *[w for o in trial.overrides for w in ("--set", o)]])
        rendered = render_array(backend, spec, opts, trials_document(trials, args), len(trials),
                                parallel)
        mode, trial_files = "array", []
    else:
        rendered, trial_files = _bounded_render(spec, trials, sweep_id, backend, opts)
        mode = "bounded"
    if params["dry_run"]:
        click.echo(rendered.dry_run_text(), nl=False)
        return

    record = store.create(spec, job_id=sweep_id)
    record.extra["sweep"] = {**sweep_extra(space, trials, parallel, mode),
                             "trial_files": trial_files}
    job_dir = Path(record.job_dir)
    try:
        record.files = [str(p.relative_to(job_dir)) for p in rendered.write(job_dir)]
        if mode == "array":
            record.backend_id = backend.submit(spec, rendered, job_dir)  # the one sbatch call
            store.save(record)
        else:
            store.save(record)  # the runner reads it
            record.backend_id = start_runner(job_dir)
            store.save(record)
    except (BackendError, OSError):
        store.discard(record)
        raise
    click.echo(f"submitted sweep {record.id}: {len(trials)} trials to {spec.backend} "
               f"({record.backend_id}), at most {parallel} at once; "
               f"follow it with: rlaunch status {record.id}", err=True)
    if params["as_json"]:
        click.echo(json.dumps(json.loads(record.to_json()), indent=2))
    else:
        click.echo(record.id)


# ---- the sweep views of status and gather ------------------------------------------------------


def _best_top1(output_dir: str | None) -> float | None:
    """The best allreduced top-1 of the trial's epochs so far (None before its first eval)."""
    from launcher.gather import epoch_rows

    if not output_dir:
        return None
    values = [r.top1 for r in epoch_rows(Path(output_dir)) if r.top1 is not None]
    return max(values) if values else None


def sweep_rows(record: JobRecord, backend: Backend) -> list[dict[str, Any]]:
    """One row per trial: values, state, progress and best top-1 (one scheduler call)."""
    from launcher.progress import read_progress
    from launcher.sweep import trial_spec
    from launcher.sweep_jobs import sweep_info, trial_states

    info = sweep_info(record)
    states = trial_states(record, backend)
    rows = []
    for trial in info.trials:
        one = trial_spec(record.job_spec, trial, record.id)
        local = record.backend != "k8s"  # k8s outputs live on a volume in the cluster
        progress = read_progress(one.output_dir if local else None, one.to_dict())
        state = states[trial.index]
        rows.append({
            "trial": trial.index, "values": trial.values, "state": state.state,
            "detail": state.detail, "exit_code": state.exit_code,
            "progress": progress.__dict__,
            "best_top1": _best_top1(one.output_dir) if local else None,
        })
    return rows


def show_sweep_status(record: JobRecord, backend: Backend, as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from launcher.sweep_jobs import sweep_info, sweep_state

    info = sweep_info(record)
    rows = sweep_rows(record, backend)
    from launcher.backends.base import JobStatus

    overall = sweep_state({r["trial"]: JobStatus(r["state"]) for r in rows})
    if overall != record.last_state:
        from launcher.store import JobStore

        record.last_state = overall
        JobStore().save(record)
    if as_json:
        click.echo(json.dumps({"id": record.id, "backend": record.backend,
                               "backend_id": record.backend_id, "state": overall,
                               "parameters": info.parameters, "trials": rows}, indent=2))
        return
    click.echo(f"sweep {record.id} on {record.backend} ({record.backend_id}): {overall}")
    table = Table("trial", *info.parameters, "state", "progress", "best top-1 %", "detail")
    for row in rows:
        p = row["progress"]
        progress = "-" if p["epoch"] is None else (
            f"epoch {p['epoch'] + 1}" + (f"/{p['epochs_total']}" if p["epochs_total"] else ""))
        best = "-" if row["best_top1"] is None else f"{row['best_top1']:.2f}"
        table.add_row(str(row["trial"]), *[row["values"].get(k, "") for k in info.parameters],
                      row["state"], progress, best, row["detail"])
    Console(width=max(100, Console().width)).print(table)


def _finite(value: Any) -> Any:
    """JSON without NaN/Infinity: non-finite numbers become null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def gather_sweep(record: JobRecord, backend: Backend, target: Path) -> None:
    """Every trial's results into `target/trial-<i>/`, the ranking, sweep.png, summary.json."""
    import shutil
    import tempfile

    from rich.console import Console
    from rich.table import Table

    from launcher.backends.base import BackendError
    from launcher.commands.gather import _move_into
    from launcher.gather import gather_outputs
    from launcher.sweep import TRIAL_DIR_PREFIX
    from launcher.sweep_jobs import sweep_info, sweep_state, trial_record, trial_states
    from launcher.sweep_plot import plot_sweep

    info = sweep_info(record)
    states = trial_states(record, backend)
    staging = Path(tempfile.mkdtemp(prefix=f"rlaunch-gather-{record.id}-"))
    trials: list[dict[str, Any]] = []
    try:
        for trial in info.trials:
            folder = staging / f"{TRIAL_DIR_PREFIX}{trial.index}"
            folder.mkdir()
            one = trial_record(record, trial.index)
            state = states[trial.index].state
            try:
                outputs = backend.fetch_outputs(one, folder / "outputs")
            except BackendError as err:  # a trial that never started has no outputs
                click.echo(f"warning: trial {trial.index}: {err}", err=True)
                trials.append({"trial": trial.index, "values": trial.values, "state": state,
                               "final": {}, "epochs": [], "curve": []})
                continue
            summary = gather_outputs(outputs, folder, one.id, state,
                                     warn=lambda m: click.echo(m, err=True))
            # paths as they will be after the move out of the staging folder
            summary.checkpoints = [str(target / Path(c).relative_to(staging))
                                   for c in summary.checkpoints]
            summary.plot = str(target / Path(summary.plot).relative_to(staging)) \
                if summary.plot else None
            (folder / "summary.json").write_text(summary.to_json())
            try:
                backend.fetch_logs(one, folder / "logs")
                for task_output in sorted(record.path.glob(
                        f"slurm-{record.backend_id}_{trial.index}.out")):
                    shutil.copy2(task_output, folder / "logs" / task_output.name)
            except (BackendError, OSError) as err:
                click.echo(f"warning: trial {trial.index} logs: {err}", err=True)
            from launcher.gather import loss_curve

            trials.append({"trial": trial.index, "values": trial.values, "state": state,
                           "final": summary.final,
                           "epochs": [r.__dict__ for r in summary.epochs],
                           "curve": loss_curve(outputs)})
        ranked = sorted(trials, key=lambda t: (-t["final"]["top1"] if "top1" in t["final"]
                                               else math.inf, t["trial"]))
        plot = plot_sweep(info.parameters, trials, staging / "sweep.png")
        summary_doc = {
            "sweep": record.id, "backend": record.backend, "backend_id": record.backend_id,
            "state": sweep_state(states), "parameters": info.parameters,
            "ranking": [t["trial"] for t in ranked],
            "trials": [{k: v for k, v in t.items() if k != "curve"} for t in ranked],
            "plot": str(target / "sweep.png") if plot else None,
        }
        (staging / "summary.json").write_text(json.dumps(_finite(summary_doc), indent=2,
                                                         allow_nan=False))
        _move_into(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    click.echo(f"sweep {record.id}: trials ranked by allreduced top-1")
    table = Table("rank", "trial", *info.parameters, "state", "top-1 %", "top-5 %")
    for place, t in enumerate(ranked, 1):
        final = t["final"]
        table.add_row(str(place), str(t["trial"]), *[t["values"].get(k, "") for k in info.parameters],
                      t["state"], f"{final['top1']:.2f}" if "top1" in final else "-",
                      f"{final['top5']:.2f}" if "top5" in final else "-")
    Console(width=max(100, Console().width)).print(table)
    click.echo(f"summary: {target / 'summary.json'}"
               + (f", plot: {target / 'sweep.png'}" if plot else ""))
