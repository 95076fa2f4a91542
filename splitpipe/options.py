"""Options declared once: a typed field gives the CLI flag, the TOML key, the JSON and the docs' row.

See docs/design.md, "Options". Lists are tuples: a TOML array, one number or a comma string reads as one.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Options", "OptionError", "Ints", "Counts", "Names", "Speeds", "Count", "Seconds", "Finite", "Events",
           "event_times", "SpeedChanges", "speed_changes", "load_toml"]

Opts = TypeVar("Opts", bound="Options")

#: Largest count any option accepts (devices, epochs, batch size...): a typo, not a plan, beyond it.
MAX_COUNT = 1_000_000


def _comma_list(item: Callable[[str], Any], what: str) -> Callable[[Any], Any]:
    """A before-validator: "1,0.5" -> (1.0, 0.5), [1, 2] -> (1, 2), 0.5 -> (0.5,); items checked after."""

    def split(value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                return tuple(item(p) for p in parts)
            except ValueError:
                raise ValueError(f"must be a comma list of {what}, got {value!r}") from None
        if isinstance(value, list):
            return tuple(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and item is not str:
            return (value,)
        return value

    return split


def _cut(text: str) -> int:
    return int(text)


Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Speed = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: Speeds against this host, one or one per node: `0.1,0.5` or `[0.1, 0.5]`.
Speeds = Annotated[tuple[Speed, ...], BeforeValidator(_comma_list(float, "numbers")), Field(min_length=1)]
#: Integers (cut points, counts): `2,10` or `[2, 10]`.
Ints = Annotated[tuple[int, ...], BeforeValidator(_comma_list(_cut, "integers"))]
#: Counts (batch sizes, micro-batch counts), each >= 1: `8,16` or `[8, 16]`.
Counts = Annotated[tuple[Count, ...], BeforeValidator(_comma_list(_cut, "integers"))]


def event_times(events: tuple[str, ...]) -> dict[str, float]:
    """("device1@2.5", ...) -> {"device1": 2.5}; ValueError names a bad item."""
    out = {}
    for item in events:
        node, at, seconds = item.rpartition("@")
        try:
            time = float(seconds)
        except ValueError:
            time = math.nan
        if not (at and node and math.isfinite(time) and time >= 0):
            raise ValueError(f"must be NODE@SECONDS with SECONDS >= 0, e.g. device1@2.5, got {item!r}")
        if node in out:
            raise ValueError(f"names {node} twice")
        out[node] = time
    return out


def _check_events(events: tuple[str, ...]) -> tuple[str, ...]:
    event_times(events)
    return events


#: Events at times: `device1@2.5,device3@10` or `["device1@2.5"]`.
Events = Annotated[tuple[str, ...], BeforeValidator(_comma_list(str, "NODE@SECONDS items")),
                   AfterValidator(_check_events)]
def speed_changes(items: tuple[str, ...]) -> list[tuple[str, float, float]]:
    """("worker2@30=0.1", ...) -> [("worker2", 30.0, 0.1)] in time order; ValueError names a bad item."""
    out = []
    for item in items:
        event, _, value = item.rpartition("=")
        try:
            [(node, time)] = event_times((event,)).items()
            speed = float(value)
        except ValueError:
            node, time, speed = "", 0.0, math.nan
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"must be NODE@SECONDS=SPEED with SECONDS >= 0 and SPEED > 0, e.g. worker2@30=0.1, "
                             f"got {item!r}")
        out.append((node, time, speed))
    return sorted(out, key=lambda change: change[1])


def _check_speed_changes(items: tuple[str, ...]) -> tuple[str, ...]:
    speed_changes(items)
    return items


#: Speed changes at times: `worker2@30=0.1,worker1@60=1` or `["worker2@30=0.1"]`.
SpeedChanges = Annotated[tuple[str, ...], BeforeValidator(_comma_list(str, "NODE@SECONDS=SPEED items")),
                         AfterValidator(_check_speed_changes)]
#: Names (network profiles, UP/DOWN/MS): `4g,wifi` or `["4g", "wifi"]`.
Names = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], BeforeValidator(_comma_list(str, "names")),
                  Field(min_length=1)]


class OptionError(ValueError):
    """Bad options, every problem at once, each as (key, what is wrong); str() is one line."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(self.render())

    def render(self, name: Callable[[str], str] = lambda key: key) -> str:
        """One line; `name` spells a key (`--seed` for a flag, `seed in run.toml` for a file key)."""
        return "; ".join(f"{name(key)} {text}" if key else text for key, text in self.problems)


class Options(BaseModel):
    """A record of options: strict types, frozen, unknown keys refused, the docstring of a field is its help."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid", use_attribute_docstrings=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _option_error(exc) from None

    def with_(self: Opts, **changes: Any) -> Opts:
        """A copy with `changes`, checked like a new record."""
        fields = {name: getattr(self, name) for name in type(self).model_fields}  # not dict(self): a field may be `keys`
        return type(self)(**{**fields, **changes})

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values: tuples as lists, nested records as objects."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls: type[Opts], text: str | bytes) -> Opts:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise _option_error(exc) from None

    @classmethod
    def option_names(cls) -> list[str]:
        """Fields that are options (flags and TOML keys), in declaration order."""
        return [n for n, f in cls.model_fields.items()
                if not (isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("internal"))]

    def to_toml(self, comments: tuple[str, ...] | list[str] = (), skip: tuple[str, ...] = ()) -> str:
        """TOML that load_toml reads back: every set option, lists as arrays; `comments` head it."""
        lines = [f"# {c}" for c in comments]
        for name in self.option_names():
            value = getattr(self, name)
            if name not in skip and value is not None and not isinstance(value, BaseModel):
                lines.append(f"{name} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def load_toml(path: str | Path, options: type[Options] | None = None) -> dict[str, Any]:
    """Read a TOML file of options; a key that `options` (default: RunConfig) lacks is an error naming it."""
    if options is None:
        from splitpipe.config import RunConfig

        options = RunConfig
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - set(options.option_names()))
    if unknown:
        raise ValueError(f"unknown keys in {path}: {', '.join(unknown)} (keys are the flag names with underscores)")
    return raw


# --- pydantic's errors as one line naming each key -------------------------------------------------

_KINDS = {
    "int_type": "must be an integer", "int_parsing": "must be an integer", "float_type": "must be a number",
    "string_type": "must be a string", "bool_type": "must be true or false", "tuple_type": "must be a list",
    "finite_number": "must be a finite number", "missing": "is required", "extra_forbidden": "is not an option",
    "model_type": "must be a table of options", "dict_type": "must be a table",
}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "<=")}


def _option_error(exc: ValidationError) -> OptionError:
    problems = []
    for error in exc.errors(include_url=False):
        inner = (error.get("ctx") or {}).get("error")
        if isinstance(inner, OptionError):  # a nested record's (pydantic runs its __init__ inside ours)
            prefix = _key(error["loc"])
            problems += [(".".join(p for p in (prefix, key) if p), text) for key, text in inner.problems]
        else:
            problems.append(_problem(error))
    return OptionError(problems)


def _key(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    return ".".join(p for p in parts if not p.isdigit()) + "".join(f"[{p}]" for p in parts if p.isdigit())


def _problem(error: Mapping[str, Any]) -> tuple[str, str]:
    key = _key(error["loc"])
    kind, ctx, seen = error["type"], error.get("ctx") or {}, _shown(error.get("input"))
    if kind == "value_error":
        text = str(ctx.get("error", error["msg"]))
        return key, text if not key or "got" in text else f"{text}, got {seen}"
    if kind in _BOUNDS:
        name, sign = _BOUNDS[kind]
        return key, f"must be {sign} {ctx[name]}, got {seen}"
    if kind == "literal_error":
        return key, f"must be one of {ctx.get('expected')}, got {seen}"
    if kind == "too_short":
        return key, f"needs at least {ctx.get('min_length')} value, got {seen}"
    if kind in ("missing", "extra_forbidden"):
        return key, _KINDS[kind]
    return key, f"{_KINDS.get(kind, error['msg'])}, got {seen}"


def _shown(value: Any) -> str:
    """A value as the user wrote it (TOML spelling), short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
