"""synthgen's exception hierarchy: one place for every error a user or caller may catch.

Every error derives from :class:`SynthgenError`. The CLI maps *input* errors (a bad config, asset,
output folder, shard input, gates file, capture source) to exit code 2 with the message, which
names the file or config key and the reason; errors about one sample (a scan that will not import,
framing that never fits, a frame that fails validation) put that sample in quarantine instead.

::

    SynthgenError
    ├── ConfigError            invalid config, asset or output folder              (render, exit 2)
    │   ├── StoreMismatchError the output folder holds another job                 (render, exit 2)
    │   ├── GpuClusterError    render.device: gpu but the cluster has no GPU        (render, exit 2)
    │   └── StoreLockedError   another driver writes into the output store         (render, exit 2)
    ├── RunStopped             a render run stopped early: storage error (exit 3),
    │                          cluster lost / no worker for too long (exit 4)
    ├── ContractError          a sample breaks the sample format                    (any stage)
    ├── ExrError               an EXR file is unreadable or lacks channels          (any stage)
    ├── ScanImportError        Blender cannot import a scan                         (render, quarantine)
    ├── GpuUnavailableError    Blender finds no GPU of the configured backend       (render worker)
    ├── FramingError           no attempt framed the subject within coverage limits (render, quarantine)
    ├── ShardInputError        bad input or options for ``synthgen shard``          (shard, exit 2)
    ├── GatesError             the QA gates file is invalid                         (qa, exit 2)
    ├── QAInputError           a QA input is neither a store nor a shard folder     (qa, exit 2)
    ├── SourceError            a capture source is unusable as a whole              (ingest, exit 2)
    └── FrameError             one capture frame cannot be ingested                 (ingest, quarantine)

The ``ValueError`` / ``RuntimeError`` bases of the classes that had them are kept, so existing
``except ValueError`` code still works.
"""

from __future__ import annotations


class SynthgenError(Exception):
    """Base class of every synthgen error."""


class ConfigError(SynthgenError, ValueError):
    """Invalid configuration or input asset; the message says where and why."""


class StoreMismatchError(ConfigError):
    """The output folder holds samples of a different job (another config hash)."""


class GpuClusterError(ConfigError):
    """``render.device: gpu`` but the Ray cluster offers no GPU."""


class StoreLockedError(ConfigError):
    """Another driver holds the output store's lock (``_meta/lock``); the message names it."""


class RunStopped(SynthgenError):
    """A render run cannot go on (raised inside the scheduler, reported in the run summary).

    ``reason``: ``io_error`` (the store's disk is full or failing), ``cluster_lost`` (the embedded
    Ray cluster died) or ``no_workers`` (no worker ran for ``render.max_wait_for_workers_s``).
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class ContractError(SynthgenError, ValueError):
    """A sample violates the contract; the message names the file and the reason."""


class ExrError(SynthgenError, ValueError):
    """An EXR file is unreadable or lacks the expected channels; the message names the file."""


class ScanImportError(SynthgenError, RuntimeError):
    """A scan file could not be imported or holds no mesh; the message names the file."""


class GpuUnavailableError(SynthgenError, RuntimeError):
    """``render.device: gpu`` but Blender finds no device of the configured backend."""


class FramingError(SynthgenError, RuntimeError):
    """No attempt produced a subject coverage inside the configured range."""


class ShardInputError(SynthgenError, ValueError):
    """Bad input or options for ``synthgen shard``.

    ``problems`` lists one message per bad sample/option, each naming the file or key and the reason.
    """

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        head = self.problems[0] if len(self.problems) == 1 else (
            f"{len(self.problems)} problems:\n  " + "\n  ".join(self.problems[:50])
            + ("\n  ..." if len(self.problems) > 50 else ""))
        super().__init__(head)


class GatesError(SynthgenError, ValueError):
    """The gates file is unreadable or invalid; the message names the file, the field and the reason."""


class QAInputError(SynthgenError, ValueError):
    """A QA input path is missing or is neither a sample store nor a shard folder."""


class FrameError(SynthgenError):
    """A frame cannot be ingested. ``reason`` is a short machine-readable code (e.g.
    ``unreadable_rgb``); ``detail`` names the file and says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SourceError(SynthgenError):
    """The whole source is unusable (empty folder, ambiguous format, bad intrinsics file...).
    The CLI reports it and exits with code 2."""
