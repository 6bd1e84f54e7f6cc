"""`rlaunch build`: build the training/serving images in docker/ with whichever builder works.

The tag defaults to a version derived from the build context's content (the files the
.dockerignore lets through, the Dockerfile and the base image), so a job that names an image
names exactly the code it ran. The work is in launcher/images; this module is only the CLI.
"""

from __future__ import annotations

from pathlib import Path

import click

from launcher.commands import user_errors
from launcher.images import PROJECT_ROOT, ImageBuildError
from launcher.images.base_image import ensure_local_base, local_base_name
from launcher.images.builders import (
    BUILDERS,
    detect_builder,
    has_registry,
    plan_build,
    stream_build,
)
from launcher.images.targets import TARGETS
from launcher.spec import IMAGE_REF_RE


def check_flags(target: str, base_image: str | None, local_base: bool) -> None:
    """Flag combinations and values `plan_build` cannot judge on its own."""
    if local_base and target != "cpu":
        raise click.BadParameter(
            f"--local-base makes a Debian base, which fits only --target cpu (got {target!r})",
            param_hint="--local-base")
    if local_base and base_image:
        raise click.BadParameter("give either --base-image or --local-base, not both",
                                 param_hint="--base-image")
    if base_image is not None and not IMAGE_REF_RE.fullmatch(base_image):
        raise click.BadParameter(
            f"{base_image!r} is not an image reference ([registry/]name[:tag][@sha256:digest])",
            param_hint="--base-image")


@click.command("build")
@click.option("--target", required=True, type=click.Choice(TARGETS),
              help="Which image: ascend (910/310), gpu (CUDA) or cpu (also the serving base).")
@click.option("--tag", default=None,
              help="Image reference. Default rlaunch-<target>:<content version>; a reference "
                   "without ':tag' gets the content version appended.")
@click.option("--builder", default="auto", show_default=True, type=click.Choice(BUILDERS),
              help="auto: a Docker daemon if reachable, else podman, else buildah.")
@click.option("--base-image", default=None,
              help="Override the Dockerfile's BASE_IMAGE (e.g. a mirror of the public default).")
@click.option("--local-base", is_flag=True,
              help="cpu only: build on a Debian bookworm base made here with debootstrap "
                   "(cached), for machines that cannot pull from a registry.")
@click.option("--context", "context", type=click.Path(file_okay=False, path_type=Path),
              default=PROJECT_ROOT, show_default="the rlaunch checkout",
              help="Build context holding docker/ and .dockerignore.")
@click.option("--push", is_flag=True, help="Push the tag after a successful build.")
@click.option("--dry-run", is_flag=True, help="Print the build (and push) command; run nothing.")
@user_errors
def build(target: str, tag: str | None, builder: str, base_image: str | None, local_base: bool,
          context: Path, push: bool, dry_run: bool) -> None:
    """Build a training/serving image from docker/<target>.Dockerfile."""
    check_flags(target, base_image, local_base)
    context = context.resolve()
    chosen = detect_builder() if builder == "auto" else builder
    if local_base:
        base_image = (local_base_name() if dry_run
                      else ensure_local_base(chosen, log=lambda m: click.echo(m, err=True)))
    plan = plan_build(target, chosen, context, tag=tag, base_image=base_image)
    if push and not has_registry(plan.tag):
        raise click.BadParameter(
            f"--push needs a tag that names a registry (host/name:tag), got {plan.tag!r}",
            param_hint="--tag")
    if dry_run:
        click.echo(plan.shell_line(plan.command()))
        if push:
            click.echo(plan.shell_line(plan.push_command()))
        return
    click.echo(f"building {plan.tag} with {chosen}: {plan.shell_line(plan.command())}", err=True)
    outcome = stream_build(plan.command(), plan.env)
    if outcome.returncode != 0:
        where = f" at {outcome.last_step}" if outcome.last_step else " before its first step"
        raise ImageBuildError(
            f"build of {plan.tag} failed (exit {outcome.returncode}){where}")
    click.echo("slowest steps: " + "; ".join(
        f"{seconds:.0f}s {step[:70]}" for seconds, step in outcome.slowest(3)), err=True)
    if push:
        pushed = stream_build(plan.push_command(), plan.env)
        if pushed.returncode != 0:
            raise ImageBuildError(f"push of {plan.tag} failed (exit {pushed.returncode})")
    click.echo(plan.tag)
