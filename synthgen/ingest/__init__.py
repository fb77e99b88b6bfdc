"""``synthgen ingest``: real RGB-D captures -> synthgen samples.

- :mod:`.formats` — one reader per capture format and auto-detection;
- :mod:`.validate` — per-frame checks; :mod:`.segment` — MediaPipe person masks;
- :mod:`.pipeline` — the run (:func:`ingest`) and its report; :mod:`.cli` — the subcommand.

The subcommand module for ``synthgen.cli.SUBCOMMANDS`` is ``synthgen.ingest.cli``.
"""

from .common import FrameError, SourceError
from .options import IngestOptions, Thresholds


def ingest(*args, **kwargs):
    """See :func:`synthgen.ingest.pipeline.ingest`."""
    from .pipeline import ingest as _ingest

    return _ingest(*args, **kwargs)


__all__ = ["ingest", "IngestOptions", "Thresholds", "FrameError", "SourceError"]


def _api():
    from .. import _api_ingest

    return _api_ingest


from .._callable import make_callable  # noqa: E402

make_callable(__name__, _api)  # ``synthgen.ingest(...)`` is :func:`synthgen.ingest` even once this package is imported
