"""Jinja environment for `templates/`: found through the installed package, never by cwd.

The top-level `templates/` directory ships inside the `launcher` package (the
`launcher/templates` symlink plus `package-data` in pyproject.toml), so the same lookup works in a
checkout, an editable install and a normal wheel install. Templates receive data; the only
"logic" offered to them is escaping for the target language: `sh` (one shell word), `shjoin`
(a list of shell words), `tojson` (a JSON value), `toyaml` (a YAML value) and `toyamlblock`
(multi-line text as a YAML literal block, e.g. a script inside a ConfigMap).
"""

from __future__ import annotations

import json
import shlex
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


def templates_dir() -> Path:
    """The directory holding the templates, wherever the package is installed."""
    return Path(str(resources.files("launcher") / "templates"))


def _sh(value: Any) -> str:
    return shlex.quote(str(value))


def _shjoin(values: list[Any]) -> str:
    return " ".join(shlex.quote(str(v)) for v in values)


_JSON = json.JSONEncoder(ensure_ascii=False)


def _tojson(value: Any) -> str:
    return _JSON.encode(value)


def _toyaml(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1 << 30)
    return text.removesuffix("\n...\n").rstrip("\n")


def _toyamlblock(text: str, indent: int) -> str:
    """A YAML literal block for multi-line text (readable scripts), JSON when it cannot be one.

    The block is checked by parsing it back, so no text can end it early or change its value.
    """
    import yaml

    text = str(text)
    if "\n" in text.rstrip("\n") and text == text.lstrip(" \n") and text.endswith("\n") \
            and not text.endswith("\n\n"):
        pad = " " * indent
        body = "\n".join(pad + line if line else "" for line in text.rstrip("\n").split("\n"))
        candidate = f"|\n{body}"
        try:
            if yaml.safe_load("k: " + candidate + "\n") == {"k": text}:
                return candidate
        except yaml.YAMLError:
            pass
    return _tojson(text)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates under the user's cache dir: compiling is most of a dry run's time."""
    import os

    import jinja2

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rlaunch" / "jinja"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(root))


@cache
def environment() -> jinja2.Environment:
    """The shared environment: strict undefined, no autoescape, the escaping filters."""
    import jinja2

    env = jinja2.Environment(
        bytecode_cache=_bytecode_cache(),
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(sh=_sh, shjoin=_shjoin, tojson=_tojson, toyaml=_toyaml,
                       toyamlblock=_toyamlblock)
    return env


def render_template(template: str, /, **context: Any) -> str:
    """Render `templates/<template>` with `context`."""
    return environment().get_template(template).render(**context)
