"""Backend options (`--opt KEY=VALUE`, or `backend_options:` in a job file), declared once.

Each backend declares its options as the fields of one dataclass (`SlurmOptions`, `K8sOptions`,
`LocalOptions`): the annotation is the type, the default is the default, and `option(...)` adds
the help, the allowed values, the check and which device kinds or jobs use it. Everything else
comes from that declaration: parsing (`parse_options`), the messages (named as the spec names
its fields: `--opt key`, or `FILE: backend_options.key`), `rlaunch options` and the option tables
in docs/. Values are read as what they are declared to be: text from the command line is never
re-typed by YAML (`namespace=0x1f` stays a string, `signal_seconds=017` is no number).

This module imports nothing heavy: the CLI imports it to build `--help`.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher.spec import JobSpec

# A check: the value (for a list or mapping option, one item; a mapping item as (key, value))
# -> None when it is allowed, else what is allowed ("an integer from 1 to 65535").
Check = Callable[[Any], "str | None"]
# Whether a job uses an option: None when it does, else why not ("only with --image").
Use = Callable[["JobSpec", Any], "str | None"]

WHOLE_NUMBER_RE = re.compile(r"0|[1-9][0-9]{0,17}")
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


@dataclass(frozen=True)
class Option:
    """What one backend option field means beyond its type and default."""

    help: str
    choices: tuple[str, ...] | None = None
    check: Check | None = None
    # Device kinds that use the option; None: every kind.
    kinds: tuple[str, ...] | None = None
    use: Use | None = None
    # How `rlaunch options` shows a default computed at submit ("from sinfo, else 4").
    default_text: str | None = None


def option(help: str, default: Any = None, *, default_factory: Callable[[], Any] | None = None,
           **meaning: Any) -> Any:
    """A field of a backend's options dataclass: `x: int = option("help", 120, check=...)`."""
    metadata = {"option": Option(help, **meaning)}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class LocalOptions:
    """The local backend has no options."""


# ---- checks --------------------------------------------------------------------------------


def int_range(lo: int, hi: int) -> Check:
    def check(value: int) -> str | None:
        return None if lo <= value <= hi else f"an integer from {lo} to {hi}"
    return check


def matches(regex: re.Pattern[str], what: str) -> Check:
    def check(value: str) -> str | None:
        return None if regex.fullmatch(value) else what
    return check


def only_with_image(spec: JobSpec, opts: Any) -> str | None:
    return None if spec.image else "it only applies with --image"


# ---- declarations --------------------------------------------------------------------------


@cache
def declared(options_type: type) -> dict[str, tuple[Any, Option]]:
    """Option name -> (type, meaning), in declaration order."""
    hints = typing.get_type_hints(options_type)
    return {f.name: (hints[f.name], f.metadata["option"]) for f in dataclasses.fields(options_type)}


def default_of(options_type: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(options_type) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def type_text(hint: Any) -> str:
    """How `rlaunch options` names a declared type."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is list:
        return "list of strings (a,b)"
    if origin is dict:
        return "KEY=VALUE list (k=v,k2=v2)"
    if args and origin is not None:
        return type_text(args[0])
    return {str: "string", int: "integer", bool: "boolean"}[hint]


def default_text(options_type: type, name: str) -> str:
    meaning = declared(options_type)[name][1]
    if meaning.default_text:
        return meaning.default_text
    value = default_of(options_type, name)
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def used_by_text(meaning: Option) -> str:
    return ", ".join(meaning.kinds) if meaning.kinds else "all"


# ---- parsing -------------------------------------------------------------------------------


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return hint, False


def _from_text(text: str, hint: Any) -> tuple[Any, str | None]:
    """A command-line value read as the declared type: (value, None) or (None, what is allowed)."""
    origin = typing.get_origin(hint)
    if hint is str:
        return text, None
    if hint is int:
        if WHOLE_NUMBER_RE.fullmatch(text):
            return int(text), None
        return None, "a whole number (ASCII digits, no sign, no leading zero)"
    if hint is bool:
        word = text.lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS, None
        return None, "true or false"
    words = [w.strip() for w in text.split(",") if w.strip()]
    if origin is list:
        return words, None
    if origin is dict:
        pairs: dict[str, str] = {}
        for word in words:
            key, sep, value = word.partition("=")
            if not sep or not key:
                return None, "comma-separated KEY=VALUE pairs"
            pairs[key] = value
        return pairs, None
    raise TypeError(f"unsupported option type {hint!r}")


def _items(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list):
        return list(value)
    return [value]


def _shown(item: Any) -> str:
    return repr(f"{item[0]}={item[1]}" if isinstance(item, tuple) else item)


def parse_options(options_type: type, spec: JobSpec, backend: str) -> tuple[Any, list[str]]:
    """`spec.backend_options` as an `options_type` object, and every problem, one line each:
    unknown keys (with the nearest known one), wrong types, values outside what is allowed, and
    options this job does not use (another device kind, no image, another workload)."""
    from launcher.spec import _type_problems

    fields = declared(options_type)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, raw in spec.backend_options.items():
        label = spec.option_label(str(key))
        if key not in fields:
            problems.append(unknown_option_line(label, str(key), fields, backend))
            continue
        hint, meaning = fields[key]
        inner, optional = _strip_optional(hint)
        if raw is None and optional:
            values[key] = None
            continue
        if isinstance(raw, str):
            value, allowed = _from_text(raw, inner)
            if allowed:
                problems.append(f"{label} {raw!r} is not {allowed}")
                continue
        else:
            wrong = _type_problems(label, raw, inner)
            if wrong:
                problems += wrong
                continue
            value = raw
        if meaning.choices and value not in meaning.choices:
            problems.append(f"{label} {value!r} is not one of {', '.join(meaning.choices)}")
            continue
        checked = [(item, meaning.check(item) if meaning.check else None) for item in _items(value)]
        bad_items = [(item, allowed) for item, allowed in checked if allowed]
        for item, allowed in bad_items:
            problems.append(f"{label} {_shown(item)} is not {allowed}")
        if not bad_items:
            values[key] = value
    opts = options_type(**values)
    if problems:
        return opts, problems
    for key in spec.backend_options:
        meaning = fields[key][1]
        label = spec.option_label(str(key))
        if meaning.kinds and spec.device_kind not in meaning.kinds:
            kinds = " or ".join(meaning.kinds)
            problems.append(f"{label} is not used by {spec.device_kind} jobs (only by {kinds} jobs)")
            continue
        reason = meaning.use(spec, opts) if meaning.use else None
        if reason:
            problems.append(f"{label} is not used by this job: {reason}")
    return opts, problems


def unknown_option_line(label: str, key: str, fields: dict[str, Any], backend: str) -> str:
    import difflib

    near = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
    hint = f"did you mean {near[0]}? " if near else ""
    listing = f"rlaunch options --backend {backend} lists them" if fields else "it has none"
    return f"{label} is not an option of the {backend} backend ({hint}{listing})"


def options_to_dict(opts: Any) -> dict[str, Any]:
    """The options that differ from their defaults, as job-file values."""
    out = {}
    for name in declared(type(opts)):
        value = getattr(opts, name)
        if value != default_of(type(opts), name):
            out[name] = value
    return out


# ---- listing -------------------------------------------------------------------------------


def options_rows(options_type: type) -> list[tuple[str, str, str, str, str]]:
    """(name, type, default, used by, help) per option, in declaration order."""
    rows = []
    for name, (hint, meaning) in declared(options_type).items():
        help_text = meaning.help
        if meaning.choices:
            help_text += f" One of: {', '.join(meaning.choices)}."
        rows.append((name, type_text(hint), default_text(options_type, name),
                     used_by_text(meaning), help_text))
    return rows


def markdown_table(options_type: type) -> str:
    """The option table docs/ carry (tests/test_docs.py keeps them in step)."""
    lines = ["| option | type | default | jobs | meaning |", "|---|---|---|---|---|"]
    for name, kind, default, used, help_text in options_rows(options_type):
        computed = declared(options_type)[name][1].default_text
        shown = default if computed or default == "-" else f"`{default}`"
        cells = [f"`{name}`", kind, shown, used, help_text]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
