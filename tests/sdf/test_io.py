"""Saving results to netCDF, loading them back, checkpoints and resuming a fit."""

import numpy as np
import pytest

import sdf
from sdf.errors import FileFormatError


@pytest.fixture
def problem(rng):
    F = [rng.standard_normal((n, 3)) for n in (8, 7, 6)]
    T = np.einsum("ir,jr,kr->ijk", *F) + 0.01 * rng.standard_normal((8, 7, 6))
    Y = F[0] @ rng.standard_normal((3, 5))

    def build(coupled=True):
        vs = [sdf.Variable.random((n, 3), seed=20 + k, name=f"v{k}")
              for k, n in enumerate((8, 7, 6))]
        if not coupled:
            return sdf.Model(t=sdf.CPD(T, vs)), vs
        d = sdf.Variable.random((5, 3), seed=30, name="d")
        model = sdf.Model(t=sdf.CPD(T, vs), y=sdf.CPD(Y, [vs[0], d]), r=sdf.L2(d, weight=1e-4))
        return model, vs

    return build


def assert_same(a, b):
    assert set(a.variables) == set(b.variables)
    for k in a.variables:
        np.testing.assert_array_equal(a.variables[k], b.variables[k])
        assert a.variables[k].dtype == b.variables[k].dtype == np.float64
    assert a.objective == b.objective
    assert a.abserr == b.abserr and a.relerr == b.relerr
    assert a.iterations == b.iterations and a.stop is b.stop and a.method == b.method
    assert a.warnings == b.warnings
    assert a.state == pytest.approx(b.state, nan_ok=True, rel=0, abs=0)
    for field in ("objective", "relchange", "step", "radius", "cg_iterations", "time"):
        np.testing.assert_array_equal(getattr(a.history, field), getattr(b.history, field))
    assert a.history.relerr.keys() == b.history.relerr.keys()
    for name in a.history.relerr:
        np.testing.assert_array_equal(a.history.relerr[name], b.history.relerr[name])


@pytest.mark.parametrize("method", ["nls", "minf"])
def test_round_trip_is_exact(problem, tmp_path, method):
    model, vs = problem()
    res = model.fit(method=method, max_iter=15)
    path = tmp_path / "fit.nc"
    res.save(path)
    back = sdf.load_result(path)
    assert_same(res, back)
    assert isinstance(back.history.cg_iterations[0], int)


def test_loaded_result_evaluates_expressions_with_its_model(problem, tmp_path):
    model, vs = problem()
    res = model.fit(max_iter=5)
    res.save(tmp_path / "fit.nc")
    back = sdf.load_result(tmp_path / "fit.nc", model=model)
    np.testing.assert_array_equal(back[vs[1]], res[vs[1]])
    assert [f.shape for f in back.factors["y"]] == [(8, 3), (5, 3)]


def test_without_model_variables_work_and_expressions_fail_clearly(problem, tmp_path):
    model, vs = problem()
    model.fit(max_iter=3).save(tmp_path / "fit.nc")
    back = sdf.load_result(tmp_path / "fit.nc")
    assert back["v0"].shape == (8, 3) and back.model is None
    with pytest.raises(sdf.ModelError, match=r"Result\[.*\]: this result has no model.*model="):
        back[vs[0]]
    with pytest.raises(sdf.ModelError, match=r"factors\['t'\]: this result has no model"):
        back.factors["t"]


def test_model_that_does_not_match_is_refused(problem, tmp_path, rng):
    model, vs = problem()
    model.fit(max_iter=2).save(tmp_path / "fit.nc")
    other = sdf.Model(m=sdf.CPD(rng.standard_normal((8, 4)), [vs[0], sdf.Variable.random((4, 3), name="w")]))
    with pytest.raises(sdf.ModelError, match=r"load_result\(.*fit\.nc'\): the saved variables"):
        sdf.load_result(tmp_path / "fit.nc", model=other)


def test_truncated_file_raises_format_error_with_path(problem, tmp_path):
    model, _ = problem()
    path = tmp_path / "fit.nc"
    model.fit(max_iter=2).save(path)
    data = path.read_bytes()
    for cut in (len(data) // 2, 40, 3):
        bad = tmp_path / f"cut{cut}.nc"
        bad.write_bytes(data[:cut])
        with pytest.raises(FileFormatError, match=rf"cut{cut}\.nc.*not a readable netCDF|cut{cut}\.nc.*damaged"):
            sdf.load_result(bad)


def test_foreign_files_raise_format_error(tmp_path):
    import xarray as xr

    text = tmp_path / "notes.nc"
    text.write_text("not netCDF at all")
    with pytest.raises(FileFormatError, match=r"notes\.nc' is not a readable netCDF file"):
        sdf.load_result(text)
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"x": ("t", np.arange(3.0))}).to_netcdf(foreign, engine="scipy")
    with pytest.raises(FileFormatError, match=r"foreign\.nc' is a netCDF file but not an sdfusion result"):
        sdf.load_result(foreign)
    with pytest.raises(FileNotFoundError, match="missing.nc"):
        sdf.load_result(tmp_path / "missing.nc")
    assert issubclass(FileFormatError, sdf.SdfError)


def test_newer_format_is_refused(problem, tmp_path):
    import xarray as xr

    model, _ = problem()
    path = tmp_path / "fit.nc"
    model.fit(max_iter=2).save(path)
    with xr.open_dataset(path, engine="scipy") as ds:
        ds = ds.load()
    ds.attrs["sdfusion_result"] = 99
    ds.to_netcdf(tmp_path / "new.nc", engine="scipy")
    with pytest.raises(FileFormatError, match="format 99, newer"):
        sdf.load_result(tmp_path / "new.nc")


def test_checkpoints_are_written_every_k_iterations(problem, tmp_path):
    model, _ = problem()
    path = tmp_path / "ck.nc"
    seen = []

    def watch(info):
        if path.exists():
            seen.append((info.iteration, sdf.load_result(path).iterations))
        return info.iteration >= 7

    res = model.fit(max_iter=50, checkpoint=str(path), checkpoint_every=3, callback=watch)
    assert [c for i, c in seen if i in (3, 4, 5, 6, 7)] == [3, 3, 3, 6, 6]
    final = sdf.load_result(path)
    assert final.stop is sdf.StopReason.CALLBACK and final.iterations == res.iterations == 7
    assert not list(tmp_path.glob(".sdf-*"))  # no temporary files left behind


def test_checkpoint_snapshot_is_marked_as_in_progress(problem, tmp_path):
    model, _ = problem()
    path = tmp_path / "ck.nc"

    def crash(info):
        if info.iteration == 4:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        model.fit(max_iter=50, checkpoint=path, checkpoint_every=2, callback=crash)
    snap = sdf.load_result(path)
    assert snap.stop is sdf.StopReason.CHECKPOINT and snap.iterations == 4
    assert len(snap.history.objective) == 5


@pytest.mark.parametrize("method", ["nls", "minf"])
def test_resume_continues_history_and_reaches_the_same_fit(problem, tmp_path, method):
    model, vs = problem(coupled=False)
    full = model.fit(method=method, max_iter=200)
    path = tmp_path / "ck.nc"
    model.fit(method=method, max_iter=200, checkpoint=path, checkpoint_every=5,
              callback=lambda info: info.iteration >= 5)
    resumed = model.fit(method=method, max_iter=200, resume=path)
    assert resumed.history.objective[:6] == full.history.objective[:6]
    assert len(resumed.history.objective) == resumed.iterations + 1
    assert resumed.iterations > 5 and resumed.stop.converged
    assert resumed.objective == pytest.approx(full.objective, rel=1e-6)
    from sdf.models import fms

    assert fms([resumed[v] for v in vs], [full[v] for v in vs]) > 0.9999


def test_resume_from_a_result_counts_max_iter_over_both_runs(problem):
    model, _ = problem()
    first = model.fit(max_iter=4)
    again = model.fit(max_iter=6, resume=first)
    assert again.iterations == 6 and again.stop is sdf.StopReason.MAX_ITER
    done = model.fit(max_iter=4, resume=first)
    assert done.iterations == 4 and done.objective == first.objective
    assert done.stop is sdf.StopReason.MAX_ITER


def test_resume_refuses_other_things(problem, rng):
    model, _ = problem()
    with pytest.raises(sdf.ModelError, match="resume must be a checkpoint path or an sdf.Result"):
        model.fit(resume=42)
    other = sdf.Model(m=sdf.CPD(rng.standard_normal((3, 3)), [sdf.Variable.random((3, 1), name="q")] * 2))
    with pytest.raises(sdf.ModelError, match=r"fit\(resume=...\): the saved variables"):
        model.fit(resume=other.fit(max_iter=2))


def test_bad_checkpoint_options(problem):
    model, _ = problem()
    with pytest.raises(sdf.OptionError, match="checkpoint_every must be an integer >= 1"):
        model.fit(checkpoint="x.nc", checkpoint_every=0)
    with pytest.raises(sdf.OptionError, match="checkpoint must be a file path or None"):
        model.fit(checkpoint=3)
