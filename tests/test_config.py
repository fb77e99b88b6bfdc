"""Config loading, validation errors (key path, value, expectation) and distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from synthgen.cli import main
from synthgen.rendering.config import RenderConfig, resolve_job
from synthgen.distributions import Choice, LogUniform, Normal, Uniform

from conftest import ROOT, SMOKE, smoke_config_copy


def _write_cfg(tmp_path: Path, mutate) -> Path:
    """Copy the smoke config into tmp_path with absolute asset paths, apply ``mutate(dict)``."""
    return smoke_config_copy(tmp_path, mutate)


def _render_exit(capsys, cfg: Path, tmp_path: Path) -> tuple[int, str]:
    out = tmp_path / "out"
    code = main(["render", "--config", str(cfg), "--out", str(out)])
    err = capsys.readouterr().err
    assert not out.exists(), "nothing may be written when the config is rejected"
    return code, err


def test_smoke_and_portrait_configs_resolve():
    for name in ("smoke.yaml", "portrait.yaml"):
        job = resolve_job(ROOT / "configs" / name)
        assert len(job.scans) >= 2 and len(job.hdris) >= 4
        assert all(Path(s.path).is_file() for s in job.scans)


def test_malformed_yaml(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nscans: [\n  - id: a\n")
    code, err = _render_exit(capsys, p, tmp_path)
    assert code == 2
    assert "bad.yaml" in err and "malformed YAML" in err and "line" in err


def test_unknown_key(tmp_path, capsys):
    p = _write_cfg(tmp_path, lambda d: d["camera"].__setitem__("focal_lenght_mm", 50))
    code, err = _render_exit(capsys, p, tmp_path)
    assert code == 2
    assert "camera.focal_lenght_mm" in err and "unknown key" in err


@pytest.mark.parametrize("focal", [0, -35, {"dist": "uniform", "low": -5, "high": 50}])
def test_non_positive_focal_length(tmp_path, capsys, focal):
    p = _write_cfg(tmp_path, lambda d: d["camera"].__setitem__("focal_length_mm", focal))
    code, err = _render_exit(capsys, p, tmp_path)
    assert code == 2
    assert "camera.focal_length_mm" in err and "must be > 0" in err


def test_bad_distribution_reports_key_path_and_value(tmp_path, capsys):
    p = _write_cfg(tmp_path, lambda d: d["camera"].__setitem__(
        "yaw_deg", {"dist": "uniform", "low": 10, "high": -10}))
    code, err = _render_exit(capsys, p, tmp_path)
    assert code == 2 and "camera.yaw_deg" in err and "low <= high" in err


def test_scan_glob_matches_nothing(tmp_path, capsys):
    p = _write_cfg(tmp_path, lambda d: d["scans"][0].__setitem__("path", str(tmp_path / "nope" / "*.glb")))
    code, err = _render_exit(capsys, p, tmp_path)
    assert code == 2 and "scans[0].path" in err and "matches no scan" in err


def test_hdri_glob_matches_nothing(tmp_path, capsys):
    p = _write_cfg(tmp_path, lambda d: d["hdris"].__setitem__("paths", [str(tmp_path / "*.hdr")]))
    code, err = _render_exit(capsys, p, tmp_path)
    assert code == 2 and "hdris.paths[0]" in err and "matches no HDRI" in err


def test_unreadable_scan(tmp_path, capsys):
    bad = tmp_path / "broken.glb"
    good = ROOT / "scenes" / "lee_perry_smith_head" / "LeePerrySmith.glb"
    bad.write_bytes(good.read_bytes()[:5000])  # truncated GLB
    p = _write_cfg(tmp_path, lambda d: d["scans"][0].__setitem__("path", str(bad)))
    code, err = _render_exit(capsys, p, tmp_path)
    assert code == 2 and "broken.glb" in err and "truncated" in err


def test_unreadable_hdri(tmp_path, capsys):
    bad = tmp_path / "junk.hdr"
    bad.write_bytes(b"this is not a radiance file\n" * 10)
    p = _write_cfg(tmp_path, lambda d: d["hdris"].__setitem__("paths", [str(bad)]))
    code, err = _render_exit(capsys, p, tmp_path)
    assert code == 2 and "junk.hdr" in err and "unreadable HDRI" in err


def test_missing_config_file(tmp_path, capsys):
    code, err = _render_exit(capsys, tmp_path / "missing.yaml", tmp_path)
    assert code == 2 and "missing.yaml" in err


def test_dry_run_prints_plan(capsys):
    code = main(["render", "--config", str(SMOKE), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    doc = yaml.safe_load(out)
    assert doc["plan"]["num_samples"] == 4
    assert sum(doc["plan"]["samples_per_scan"].values()) == 4
    assert len(doc["plan"]["hdris"]) >= 4 and "dry run" in out


def test_help_at_every_level(capsys):
    for argv in (["--help"], ["render", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--dry-run" in out and "--address" in out


def test_distributions_stay_in_bounds_and_are_seeded():
    rng = np.random.default_rng(0)
    tn = Normal(dist="normal", mean=0, std=30, low=-20, high=10)
    xs = [tn.sample(rng) for _ in range(2000)]
    assert min(xs) >= -20 and max(xs) <= 10 and np.std(xs) > 5
    lu = LogUniform(dist="loguniform", low=1, high=100)
    ls = np.log10([lu.sample(rng) for _ in range(4000)])
    assert 0 <= ls.min() and ls.max() <= 2 and abs(np.mean(ls) - 1) < 0.05
    ch = Choice(dist="choice", values=["a", "b"], weights=[3, 1])
    frac = np.mean([ch.sample(rng) == "a" for _ in range(4000)])
    assert abs(frac - 0.75) < 0.03
    u = Uniform(dist="uniform", low=2, high=3)
    assert [u.sample(np.random.default_rng(5)) for _ in range(2)] == [u.sample(np.random.default_rng(5))] * 2


def test_config_rejects_both_focal_and_fov():
    data = yaml.safe_load(SMOKE.read_text())
    data["camera"]["fov_deg"] = 40
    with pytest.raises(Exception, match="exactly one of focal_length_mm or fov_deg"):
        RenderConfig.model_validate(data)
