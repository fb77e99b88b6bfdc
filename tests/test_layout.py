"""The package layout's rules (docs/architecture.md) and the public API (README "Python API")."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "synthgen"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_render_blender_imports_bpy():
    offenders = [str(p.relative_to(ROOT)) for p in PKG.rglob("*.py")
                 if "bpy" in _imports(p) and PKG / "rendering" / "blender" not in p.parents]
    assert offenders == [], f"bpy imported outside synthgen/rendering/blender/: {offenders}"
    assert any("bpy" in _imports(p) for p in (PKG / "rendering" / "blender").rglob("*.py"))


def test_import_synthgen_is_light():
    code = ("import sys, synthgen; import synthgen.rendering, synthgen.shard, synthgen.store, synthgen.contract; "
            "print(sorted(m for m in ('bpy', 'ray', 'torch', 'mediapipe') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_public_api_names():
    import synthgen

    for name in ("load_job", "sample_params", "render", "open_store", "ingest", "pack", "verify_shards", "qa"):
        assert callable(getattr(synthgen, name)) and getattr(synthgen, name).__doc__, name
    assert set(synthgen.__all__) >= {"load_job", "render", "open_store"}


def test_readme_python_example_runs(tmp_path: Path):
    """The README's "Python API" example, run as written in a fresh interpreter (paths into tmp_path)."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S)
    assert m, "README has no Python API example"
    code = m.group(1).replace("out/", f"{tmp_path}/")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=900,
                         env={**__import__("os").environ, "RAY_AUTH_MODE": "disabled"})
    assert res.returncode == 0, res.stderr[-4000:]
    assert "samples" in res.stdout
