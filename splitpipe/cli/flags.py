"""Argparse flags generated from an Options record's fields, so a flag is never declared by hand."""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Collection, Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from splitpipe.options import OptionError, Options

__all__ = ["add_flags", "flag_of", "flags_of", "given", "parse_options", "FlagSpec"]


class FlagSpec:
    """How one field reads on the command line: its flag, argparse keywords, and what the docs show."""

    def __init__(self, name: str, field: FieldInfo) -> None:
        self.name = name
        self.field = field
        self.help = " ".join((field.description or "").split())
        kind, self.optional = _base(field.annotation)
        self.is_list = get_origin(kind) is tuple
        if kind is bool and field.default is True:  # its docstring says what it does; the flag turns that off
            self.help = f"do not {self.help}"
        if kind is bool:
            self.flag = f"--no-{_dashed(name)}" if field.default is True else f"--{_dashed(name)}"
            self.kwargs: dict[str, Any] = {"action": "store_false" if field.default is True else "store_true"}
            self.metavar = ""
        else:
            self.flag = f"--{_dashed(name)}"
            self.metavar = "LIST" if self.is_list else _metavar(kind)
            self.kwargs = {"type": _converter(kind), "metavar": self.metavar, "required": field.is_required()}
            if get_origin(kind) is Literal:
                self.kwargs["choices"] = get_args(kind)

    def default_text(self) -> str:
        default = self.field.get_default(call_default_factory=True)
        if default is None or self.field.is_required() or self.kwargs.get("action"):
            return ""
        return ",".join(map(str, default)) if isinstance(default, tuple) else str(default)

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        shown = self.default_text()
        help_text = self.help + (f" (default: {shown})" if shown else "")
        parser.add_argument(self.flag, dest=self.name, default=argparse.SUPPRESS,
                            help=help_text.replace("%", "%%"), **self.kwargs)


def flags_of(options: type[Options], only: Collection[str] | None = None,
             exclude: Collection[str] = ()) -> Iterator[FlagSpec]:
    """The flag of each option of `options` (nested records and internal fields have none)."""
    for name in options.option_names():
        field = options.model_fields[name]
        if name in exclude or (only is not None and name not in only) or _is_record(field.annotation):
            continue
        yield FlagSpec(name, field)


def add_flags(parser: argparse.ArgumentParser, options: type[Options], only: Collection[str] | None = None,
              exclude: Collection[str] = ()) -> None:
    for spec in flags_of(options, only, exclude):
        spec.add_to(parser)


def flag_of(name: str, options: type[Options]) -> str:
    return FlagSpec(name, options.model_fields[name]).flag


def given(args: argparse.Namespace, options: type[Options]) -> dict[str, Any]:
    """The options of `options` given on the command line (flags left out are absent)."""
    return {name: getattr(args, name) for name in options.option_names() if hasattr(args, name)}


def parse_options(options: type[Options], flags: dict[str, Any], file_values: dict[str, Any] | None = None,
                  source: str = "", **fixed: Any) -> Any:
    """`options` from a file's values, then the flags, then `fixed`; errors name the flag or the file's key."""
    values = {**(file_values or {}), **flags, **fixed}
    try:
        return options(**values)
    except OptionError as exc:
        def top(key: str) -> str:
            return key.split("[")[0].split(".")[0]

        def name(key: str) -> str:
            return flag_of(top(key), options) + key[len(top(key)):] if top(key) in flags else key

        from_file = source and any(top(k) in (file_values or {}) and top(k) not in flags for k, _ in exc.problems)
        raise ValueError((f"{source}: " if from_file else "") + exc.render(name)) from None


def _dashed(name: str) -> str:
    return name.replace("_", "-")


def _base(annotation: Any) -> tuple[Any, bool]:
    """`X | None` -> (X, True), without Annotated's layers."""
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        annotation, optional = (args[0] if len(args) == 1 else str), True
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation, optional


def _is_record(annotation: Any) -> bool:
    kind = _base(annotation)[0]
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _metavar(kind: Any) -> str:
    return {int: "N", float: "X"}.get(kind, "TEXT") if get_origin(kind) is not Literal else "{" + ",".join(get_args(kind)) + "}"


def _converter(kind: Any) -> Callable[[str], Any]:
    """int and float flags become numbers here (argparse names a bad one); lists stay text for the record."""
    if kind is int:
        return int
    if kind is float:
        return float
    return str
