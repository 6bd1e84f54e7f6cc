"""The `rlaunch` command line. Subcommands are imported lazily so `--help` stays fast.

Other areas register a subcommand with a one-line edit of COMMANDS ("name": "module:attr").
"""

from __future__ import annotations

import importlib

import click

COMMANDS: dict[str, str] = {
    "submit": "launcher.commands.submit:submit",
    "status": "launcher.commands.jobs:status",
    "list": "launcher.commands.jobs:list_jobs",
    "cancel": "launcher.commands.jobs:cancel",
    "logs": "launcher.commands.jobs:logs",
    "gather": "launcher.commands.gather:gather",
    "ranktable": "launcher.commands.ranktable:ranktable",
    "build": "launcher.commands.build:build",
    "options": "launcher.commands.options:options",
    "sweep": "launcher.commands.sweep:sweep",
}

# One-line summaries shown by `rlaunch --help` without importing the commands.
SUMMARIES: dict[str, str] = {
    "submit": "Submit a train/eval/export job (or --dry-run it).",
    "status": "Show a job's state, restarts and progress.",
    "list": "List recent jobs.",
    "cancel": "Cancel a job.",
    "logs": "Print a job's logs (all ranks merged, or one); -f follows.",
    "gather": "Copy a job's checkpoints and logs, report accuracy, plot curves.",
    "ranktable": "Write or check an HCCL rank table for Ascend.",
    "build": "Build the training/serving container images.",
    "options": "List a backend's --opt options: name, type, default, help.",
    "sweep": "Submit one job per point of a search space (--grid, --random).",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                raise click.UsageError(f"command {cmd_name!r} is not available yet ({err})") from err
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUMMARIES.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rlaunch")
def cli() -> None:
    """Train, evaluate and serve ResNeSt on Slurm, Kubernetes or this machine."""


def main() -> None:
    cli(auto_envvar_prefix="RLAUNCH")


if __name__ == "__main__":
    main()
