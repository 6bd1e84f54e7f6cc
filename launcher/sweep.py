"""Sweeps: a search space over training-config values, turned into one job spec per trial.

Pure: nothing here touches a scheduler or the disk. The space is a grid (`--grid lr=0.05,0.1`,
the product of every grid) and/or `--random N` draws of ranges (`--range lr=loguniform:1e-3:1e-1`)
from a seeded generator, so the same command always gives the same trials. Each trial is the
sweep's job spec with the trial's values as extra `--set` overrides and its own output folder,
`<output-dir>/trial-<i>/`, and goes through the same checks as `rlaunch submit`'s.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from launcher.spec import OVERRIDE_KEY_RE, JobSpec

# Slurm's default MaxArraySize is 1001 (array indices 0-1000); more trials than that is a typo.
MAX_TRIALS = 1000
TRIAL_DIR_PREFIX = "trial-"
TRIALS_FILE = "trials.json"
DISTRIBUTIONS: dict[str, str] = {
    "uniform": "uniform:LOW:HIGH (a float)",
    "loguniform": "loguniform:LOW:HIGH (a float, LOW > 0, even in log space)",
    "int": "int:LOW:HIGH (an integer, both ends included)",
    "choice": "choice:A,B,C (one of the values)",
}


class SweepError(ValueError):
    """A bad search space; the message is one line naming the flag and the value."""


@dataclass(frozen=True)
class Range:
    """One `--range` parameter: a distribution and its bounds (or choices)."""

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str, ...] = ()

    def draw(self, rng: random.Random) -> str:
        """One value as the text of a `--set` override."""
        if self.kind == "choice":
            return rng.choice(self.choices)
        if self.kind == "int":
            return str(rng.randint(int(self.low), int(self.high)))
        if self.kind == "loguniform":
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return f"{value:.4g}"


@dataclass(frozen=True)
class Trial:
    """One point of the space: its index in the sweep and the swept values (as `--set` text)."""

    index: int
    values: dict[str, str]

    @property
    def overrides(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.values.items()]

    def describe(self) -> str:
        return f"trial {self.index} ({', '.join(self.overrides)})"


@dataclass
class SweepSpace:
    """The parsed `--grid`/`--range` flags and the `--random N --seed S` draw settings."""

    grid: dict[str, list[str]] = field(default_factory=dict)
    ranges: dict[str, Range] = field(default_factory=dict)
    samples: int = 0
    seed: int = 0

    @property
    def parameters(self) -> list[str]:
        return [*self.grid, *self.ranges]

    def trials(self) -> list[Trial]:
        """Every grid point, once per random draw (grid only: each point once)."""
        points = [dict(zip(self.grid, combo, strict=True))
                  for combo in itertools.product(*self.grid.values())]
        rng = random.Random(self.seed)
        draws = [{key: r.draw(rng) for key, r in self.ranges.items()}
                 for _ in range(self.samples)] if self.ranges else [{}]
        values = [{**point, **draw} for draw in draws for point in points]
        return [Trial(i, v) for i, v in enumerate(values)]


def _key(text: str, flag: str) -> tuple[str, str]:
    key, sep, rest = text.partition("=")
    if not sep or not OVERRIDE_KEY_RE.fullmatch(key):
        raise SweepError(f"{flag} {text!r} must look like KEY=VALUES with a config key "
                         "such as lr or batch_size")
    return key, rest


def _float(text: str, flag: str, item: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SweepError(f"{flag} {item!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise SweepError(f"{flag} {item!r}: {text!r} is not a finite number")
    return value


def parse_range(item: str) -> Range:
    """`lr=loguniform:1e-3:1e-1`, `wd=uniform:0:1e-4`, `epochs=int:2:5`, `opt=choice:a,b`."""
    flag = "--range"
    key, spec = _key(item, flag)
    kind, _, bounds = spec.partition(":")
    allowed = "; ".join(DISTRIBUTIONS.values())
    if kind not in DISTRIBUTIONS:
        raise SweepError(f"{flag} {item!r}: {kind!r} is not a distribution (allowed: {allowed})")
    if kind == "choice":
        choices = tuple(c for c in bounds.split(","))
        if not bounds or any(not c or _unsafe(c) for c in choices):
            raise SweepError(f"{flag} {item!r}: give the choices as {DISTRIBUTIONS['choice']}")
        return Range(key, kind, choices=choices)
    parts = bounds.split(":")
    if len(parts) != 2:
        raise SweepError(f"{flag} {item!r}: expected {DISTRIBUTIONS[kind]}")
    if kind == "int":
        if not all(p.lstrip("-").isdigit() and p.isascii() and len(p) < 12 for p in parts):
            raise SweepError(f"{flag} {item!r}: int bounds must be integers")
        low, high = float(int(parts[0])), float(int(parts[1]))
    else:
        low, high = (_float(p, flag, item) for p in parts)
    if low > high:
        raise SweepError(f"{flag} {item!r}: LOW {parts[0]} is above HIGH {parts[1]}")
    if kind == "loguniform" and low <= 0:
        raise SweepError(f"{flag} {item!r}: loguniform bounds must be > 0")
    return Range(key, kind, low, high)


def _unsafe(value: str) -> bool:
    """Values that no `--set` override can carry (they would split or end the pair)."""
    return any(ch in value for ch in "=\x00\n\r") or not value.isprintable()


def parse_grid(item: str) -> tuple[str, list[str]]:
    """`lr=0.05,0.1,0.2` -> ("lr", ["0.05", "0.1", "0.2"])."""
    key, text = _key(item, "--grid")
    values = text.split(",")
    if not text or any(not v.strip() for v in values):
        raise SweepError(f"--grid {item!r}: give one or more values separated by ',' "
                         "(e.g. lr=0.05,0.1)")
    bad = [v for v in values if _unsafe(v)]
    if bad:
        raise SweepError(f"--grid {item!r}: value {bad[0]!r} cannot be a config value")
    if len(set(values)) != len(values):
        raise SweepError(f"--grid {item!r} lists a value twice")
    return key, values


def parse_space(grid: tuple[str, ...], ranges: tuple[str, ...], samples: int | None,
                seed: int) -> SweepSpace:
    """The space from the flags, with one SweepError for the first problem."""
    space = SweepSpace(seed=seed, samples=samples or 0)
    for item in grid:
        key, values = parse_grid(item)
        if key in space.grid:
            raise SweepError(f"--grid {key} is given twice")
        space.grid[key] = values
    for item in ranges:
        parsed = parse_range(item)
        if parsed.key in space.grid or parsed.key in space.ranges:
            raise SweepError(f"--range {parsed.key} is already swept (each key once)")
        space.ranges[parsed.key] = parsed
    if space.ranges and not samples:
        raise SweepError("--range needs --random N: how many values to draw")
    if samples and not space.ranges:
        raise SweepError(f"--random {samples} needs at least one --range KEY=DIST:...")
    if not space.parameters:
        raise SweepError("a sweep needs --grid KEY=V1,V2 or --random N with --range KEY=DIST")
    count = math.prod(len(v) for v in space.grid.values()) * (samples or 1)
    if count > MAX_TRIALS:
        raise SweepError(f"the space has {count} trials; at most {MAX_TRIALS} per sweep")
    return space


def trial_spec(spec: JobSpec, trial: Trial, sweep_id: str) -> JobSpec:
    """The sweep's spec for one trial: its values as overrides (after the sweep's own `--set`
    values, so they win), its own output folder and a job id derived from the sweep's."""
    output = f"{spec.output_dir.rstrip('/')}/{TRIAL_DIR_PREFIX}{trial.index}" \
        if spec.output_dir else None
    return spec.replace(overrides=[*spec.overrides, *trial.overrides], output_dir=output,
                        job_id=trial_job_id(sweep_id, trial.index))


def trial_job_id(sweep_id: str, index: int) -> str:
    """`<sweep id>-t<i>`: a DNS label (at most 47 + 5 characters) for per-trial objects."""
    return f"{sweep_id}-t{index}"


def swept_in_set(spec: JobSpec, space: SweepSpace) -> list[str]:
    """Keys both swept and fixed with `--set` (ambiguous: which one would the user mean?)."""
    fixed = {item.partition("=")[0].strip() for item in spec.overrides}
    return [key for key in space.parameters if key in fixed]


def trials_document(trials: list[Trial], args: list[list[str]]) -> str:
    """trials.json, one trial a line: its index, values and the trainer arguments it appends."""
    lines = [json.dumps({"index": t.index, "values": t.values, "args": a})
             for t, a in zip(trials, args, strict=True)]
    return '{"trials": [\n' + ",\n".join(lines) + "\n]}\n"


def sweep_extra(space: SweepSpace, trials: list[Trial], max_parallel: int,
                mode: str) -> dict[str, Any]:
    """What the sweep's store record keeps in `extra["sweep"]`."""
    return {
        "parameters": space.parameters,
        "max_parallel": max_parallel,
        "mode": mode,
        "seed": space.seed,
        "trials": [{"index": t.index, "values": t.values} for t in trials],
    }
