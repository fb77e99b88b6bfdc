"""``synthgen render``: config → sampled parameters → Blender on Ray workers → a sample store.

Modules (data flow order): :mod:`.config` (the job: YAML, validation, assets, config hash),
:mod:`.sampling` (per-sample parameters from named random streams), :mod:`.driver` (a run on Ray:
store checks, ledger, summary), :mod:`.scheduler` (samples onto actors: grouping, retries,
recycling), :mod:`.actor` (the Ray actor: Blender on the main thread, a writer thread),
:mod:`.worker` (one sample: Blender passes, then post-processing and writing), :mod:`.postfx`
(exposure, white balance, sensor noise), :mod:`.record` (the sample's JSON record),
:mod:`.depth_sensor` (simulated Kinect-like depth), :mod:`.preview`, :mod:`.ledger` (``_meta/``
run files), :mod:`.cli`; :mod:`.blender` is the only code that imports ``bpy``.

Importing this package imports neither bpy nor ray.
"""
