"""Dataset QA reports: ``synthgen qa PATH [PATH ...] --out REPORT_DIR``.

- :mod:`synthgen.qa.sources` — reading stores and WebDataset shard folders one sample at a time;
- :mod:`synthgen.qa.gates` — gate thresholds (YAML, pydantic);
- :mod:`synthgen.qa.stats` — per-sample metrics and streaming, bounded-memory statistics;
- :mod:`synthgen.qa.report` — ``report.json`` and the self-contained ``report.html``;
- :mod:`synthgen.qa.cli` — the command (``add_parser``) and :func:`run_qa`.
"""

from .cli import add_parser, run_qa

__all__ = ["add_parser", "run_qa"]
