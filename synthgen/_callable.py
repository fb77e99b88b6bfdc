"""Subpackages that are also public functions: ``synthgen.ingest`` and ``synthgen.qa`` are both the
package (``synthgen/ingest/``, ``synthgen/qa/``) and a function of the public API. Python binds the
attribute ``synthgen.ingest`` to the subpackage as soon as anything imports ``synthgen.ingest.x``, so
the subpackage module itself is made callable: calling it calls the API function."""

from __future__ import annotations

import sys
import types
from typing import Any, Callable


def make_callable(module_name: str, target: Callable[[], Callable[..., Any]]) -> None:
    """Give the module ``module_name`` a ``__call__`` that forwards to ``target()`` (resolved lazily)."""

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return target()(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule
