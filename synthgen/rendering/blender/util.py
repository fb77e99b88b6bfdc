"""Small helpers for the Blender modules (no scene state)."""

from __future__ import annotations

import contextlib
import os
from typing import Any


@contextlib.contextmanager
def _quiet_stdout():
    """Silence Blender's C-level progress output (``Fra: ...``) on fd 1 for the duration."""
    try:
        fd = os.dup(1)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(fd, 1)
            os.close(fd)


def _frame_range(action) -> tuple[int, int]:
    """Inclusive integer frame range of an action (its keyframe range rounded to whole frames)."""
    first, last = action.frame_range
    return int(round(first)), int(round(last))


def _pose_actions_of(arm) -> list[Any]:
    """Actions of an armature (active and NLA strips) that animate at least one pose bone, by name."""
    ad = arm.animation_data
    if ad is None:
        return []
    acts = {a for a in [ad.action, *(s.action for t in ad.nla_tracks for s in t.strips)] if a is not None}
    keep = [a for a in acts if any(fc.data_path.startswith("pose.bones[") for fc in a.fcurves)]
    for a in keep:
        a.use_fake_user = True  # unassigned but kept until the scan is cleared
    return sorted(keep, key=lambda a: a.name)


def _cause(exc: BaseException, limit: int = 2000) -> str:
    """The real cause of a Blender operator error: its message lines without Blender's trailing
    ``Location: .../bpy/ops.py:N`` pointer (which is all the last line holds), at most ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("Location:")]
    text = " | ".join(lines) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:limit]
