"""Dataset QA reports: ``synthgen qa PATH [PATH ...] --out REPORT_DIR``.

- :mod:`synthgen.qa.inputs` — what the inputs are (store or shard folder, split), folder-level information;
- :mod:`synthgen.qa.reader` — reading stores and WebDataset shard folders one sample at a time;
- :mod:`synthgen.qa.samples` — one sample: its members, decoding and checking them;
- :mod:`synthgen.qa.gates` — gate thresholds (YAML, pydantic);
- :mod:`synthgen.qa.metrics` — per-sample metrics and gate checks (pure functions of one sample);
- :mod:`synthgen.qa.accumulators` — streaming, bounded-memory statistics and gate verdicts;
- :mod:`synthgen.qa.sensor` — depth-sensor statistics (simulated vs real);
- :mod:`synthgen.qa.report` — ``report.json`` and the self-contained ``report.html``;
- :mod:`synthgen.qa.cli` — the command (``add_parser``) and :func:`run_qa`.
"""

from .cli import add_parser, run_qa

__all__ = ["add_parser", "run_qa"]


def _api():
    from .. import _api_qa

    return _api_qa


from .._callable import make_callable  # noqa: E402

make_callable(__name__, _api)  # ``synthgen.qa(...)`` is :func:`synthgen.qa` even once this package is imported
