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
