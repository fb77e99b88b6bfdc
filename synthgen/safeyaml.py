"""Loading untrusted YAML with a bounded cost: size, nesting depth and expanded node count.

``yaml.safe_load`` builds no arbitrary objects, but its aliases make a 1 KB document describe a
tree of billions of nodes ("billion laughs": ``a: &a [x, x]``, ``b: &b [*a, *a]``, ...). PyYAML
shares aliased nodes, so loading is cheap; the cost explodes later, in whatever walks the value as
a tree (validation, ``repr()``, ``json.dumps``, ``copy.deepcopy`` of a dict...). This loader walks
the parser's event stream once (libyaml when available) and refuses, before any object is built:

- documents larger than ``max_bytes`` (:data:`MAX_BYTES`);
- nesting deeper than ``max_depth`` (:data:`MAX_DEPTH`; deep nesting also overflows recursive code);
- documents whose tree, with every alias expanded, has more than ``max_nodes`` (:data:`MAX_NODES`)
  nodes, computed exactly from the events in linear time (an alias adds the size of its anchor);
- recursive aliases (an alias to an anchor that is still open);
- more than one document in a stream; integers longer than Python's digit limit (a clean error
  instead of ``ValueError``).

Errors are :class:`SafeYAMLError` (a ``ValueError``) with a message naming the source, what limit was
hit and where (line, column). Used for render configs and ``--set`` values; the same limits suit
other small YAML inputs (e.g. a QA gates file): call :func:`load` or :func:`load_file`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SafeYAMLError(ValueError):
    """YAML refused or malformed; the message names the source and, when known, line and column."""


def _where(ev) -> str:
    m = getattr(ev, "start_mark", None)
    return f" at line {m.line + 1}, column {m.column + 1}" if m is not None else ""


def check_events(text: str, source: str = "<yaml>", max_depth: int = MAX_DEPTH,
                 max_nodes: int = MAX_NODES) -> int:
    """Walk the parser events of ``text``; returns the expanded node count or raises SafeYAMLError."""
    anchors: dict[str, int] = {}
    stack: list[list] = []  # [anchor or None, accumulated size]
    total = 0
    docs = 0
    try:
        for ev in yaml.parse(text, Loader=_Loader):
            if isinstance(ev, yaml.DocumentStartEvent):
                docs += 1
                if docs > 1:
                    raise SafeYAMLError(f"{source}: more than one YAML document{_where(ev)}")
                continue
            if isinstance(ev, (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)):
                continue
            if isinstance(ev, yaml.AliasEvent):
                if ev.anchor not in anchors:
                    open_ = any(fr[0] == ev.anchor for fr in stack)
                    raise SafeYAMLError(f"{source}: {'recursive' if open_ else 'undefined'} alias "
                                        f"*{ev.anchor}{_where(ev)}")
                size = anchors[ev.anchor]
            elif isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                stack.append([ev.anchor, 1])
                if len(stack) > max_depth:
                    raise SafeYAMLError(f"{source}: nesting deeper than {max_depth} levels{_where(ev)}")
                continue
            elif isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                anchor, size = stack.pop()
                if anchor is not None:
                    anchors[anchor] = size
            else:  # ScalarEvent
                size = 1
                if ev.anchor is not None:
                    anchors[ev.anchor] = 1
            if stack:
                stack[-1][1] += size
                if stack[-1][1] > max_nodes:
                    raise SafeYAMLError(
                        f"{source}: the document expands to more than {max_nodes} nodes (aliases "
                        f"repeat their anchor's whole content){_where(ev)}; refused")
            else:
                total += size
    except yaml.YAMLError as exc:
        raise SafeYAMLError(_yaml_message(exc, source)) from None
    return total


def _yaml_message(exc: yaml.YAMLError, source: str) -> str:
    where = ""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        where = f" at line {mark.line + 1}, column {mark.column + 1}"
    return f"{source}: malformed YAML{where}: {getattr(exc, 'problem', None) or exc}"


def load(text: str | bytes, source: str = "<yaml>", *, max_bytes: int = MAX_BYTES,
         max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """``yaml.safe_load(text)`` within the limits (see the module docstring).

    ``bytes`` must be UTF-8 (a BOM is allowed). Raises :class:`SafeYAMLError`.
    """
    if isinstance(text, bytes):
        text = decode(text, source)
    if len(text) > max_bytes:
        raise SafeYAMLError(f"{source}: {len(text)} characters; YAML inputs are limited to {max_bytes}")
    check_events(text, source, max_depth, max_nodes)
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        raise SafeYAMLError(_yaml_message(exc, source)) from None
    except (ValueError, RecursionError, OverflowError) as exc:  # e.g. an integer beyond Python's digit limit
        raise SafeYAMLError(f"{source}: unusable value: {str(exc)[:200]}") from None


def decode(data: bytes, source: str) -> str:
    """UTF-8 (optionally with a BOM) or a SafeYAMLError naming the first bad byte's offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SafeYAMLError(f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}, "
                            f"line {line}); save the file as UTF-8") from None


def load_file(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES, **limits: Any) -> Any:
    """Read and :func:`load` a file, reading at most ``max_bytes + 1`` bytes (also for endless files
    such as ``/dev/zero``). ``OSError`` propagates (callers word it for their users)."""
    p = Path(path)
    with open(p, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise SafeYAMLError(f"{p}: larger than {max_bytes} bytes; YAML inputs are limited to that")
    return load(decode(data, str(p)), str(p), max_bytes=max_bytes, **limits)


def bounded_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters at a cost bounded by ``limit`` (not by the size
    of ``value``: nested containers are abbreviated by :mod:`reprlib` before any text is built)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset = 3, 4, 4, 4, 4
    r.maxfrozenset, r.maxdeque, r.maxarray = 4, 4, 4
    r.maxstring, r.maxlong, r.maxother = limit, 40, limit
    try:
        s = r.repr(value)
    except Exception:  # a value whose repr fails
        s = f"<{type(value).__name__}>"
    return s if len(s) <= limit else s[:limit - 3] + "..."
