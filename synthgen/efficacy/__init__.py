"""``synthgen efficacy``: how good is the model that this data trains?

Trains a small depth U-Net (~1 M parameters, :mod:`.model`) on synthgen training data (a sample store
or a shard folder), evaluates it on real captures ingested with ``synthgen ingest`` against baselines
(constant depth, an ellipsoid bump on the person mask, the untrained network) and on a held-back,
subject-disjoint part of the training data, and writes ``efficacy.json`` and ``index.html``
(:mod:`.report`). See docs/efficacy.md.

Modules: :mod:`.data` (the only importer of synthgen internals; loading and letterboxing),
:mod:`.metrics` (numpy metrics and baselines), :mod:`.model` (PyTorch network, SILog, training),
:mod:`.prepare` (reading, subject hold-out, evaluation sets), :mod:`.run` (orchestration),
:mod:`.report` (outputs), :mod:`.cli` (the subcommand).
Only :mod:`.model` and :mod:`.run` import PyTorch, an optional extra: ``pip install 'synthgen[train]'``.
"""
