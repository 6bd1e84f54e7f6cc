"""Kept so older imports keep working: the image code lives in `launcher.images`, the
`rlaunch build` command in `launcher.commands.build`."""

from __future__ import annotations

from launcher.images import PROJECT_ROOT, ImageBuildError, ImageUsageError
from launcher.images.base_image import cache_dir, ensure_local_base, local_base_name
from launcher.images.builders import (
    BUILDAH_DEFAULT_ENV,
    BUILDERS,
    BuildPlan,
    _project_version,
    detect_builder,
    plan_build,
    stream_build,
)
from launcher.images.context import content_version, context_files, git_revision
from launcher.images.targets import TARGETS, copy_sources, dockerfile_for, missing_from_context

__all__ = [
    "BUILDAH_DEFAULT_ENV",
    "BUILDERS",
    "PROJECT_ROOT",
    "TARGETS",
    "BuildPlan",
    "ImageBuildError",
    "ImageUsageError",
    "_project_version",
    "cache_dir",
    "content_version",
    "context_files",
    "copy_sources",
    "detect_builder",
    "dockerfile_for",
    "ensure_local_base",
    "git_revision",
    "local_base_name",
    "missing_from_context",
    "plan_build",
    "stream_build",
]
