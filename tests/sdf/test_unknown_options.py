"""A misspelt keyword names the function called, the closest name and every name known."""

import numpy as np
import pytest

import sdf
from sdf.errors import ModelError, OptionError
from sdf.models import cpd, fuse, lmlra, rankest, stability


@pytest.fixture
def T(rng):
    return rng.standard_normal((6, 5, 4))


def test_cpd_unknown_option_names_cpd_its_parameters_and_the_closest_name(T):
    with pytest.raises(OptionError, match=r"^cpd: unknown option\(s\) 'sed' "
                                          r"\(did you mean 'seed'\?\)") as info:
        cpd(T, 3, sed=0)
    message = str(info.value)
    assert "cpd's parameters (data, rank, init, n_starts, seed, method" in message
    assert "options of method='nls' (cg_max_iter" in message


def test_cpd_unknown_solver_option_suggests_the_option(T):
    with pytest.raises(OptionError, match=r"cpd: .*'max_iterr' \(did you mean 'max_iter'\?\)"):
        cpd(T, 2, max_iterr=3)


def test_lmlra_unknown_option_names_lmlra(T):
    with pytest.raises(OptionError, match=r"^lmlra: unknown option.*'hooi_max_iter'"):
        lmlra(T, (2, 2, 2), hooi_maxiter=3)


def test_rankest_names_its_own_and_cpds_parameters(T):
    with pytest.raises(OptionError, match=r"^rankest: .*did you mean 'n_starts'") as info:
        rankest(T, 3, n_start=3)
    assert "compress" in str(info.value) and "max_rank" in str(info.value)


def test_stability_unknown_option_names_stability(T):
    with pytest.raises(OptionError, match=r"^stability: .*did you mean 'n_repeats'"):
        stability(T, 2, n_repeat=2)


def test_fuse_unknown_option_names_fuse_and_model_fit(rng):
    xr = pytest.importorskip("xarray")
    data = {"x": xr.DataArray(rng.random((4, 3)), dims=("a", "b"))}
    with pytest.raises(OptionError, match=r"^fuse: .*did you mean 'display'") as info:
        fuse(data, 1, dispaly=1)
    assert "resume" in str(info.value)


def test_model_fit_unknown_option_names_model_fit(T):
    a = sdf.Variable(np.ones((6, 2)), name="a")
    model = sdf.Model(x=sdf.CPD(T, [a, np.ones((5, 2)), np.ones((4, 2))]))
    with pytest.raises(OptionError, match=r"^Model\.fit: unknown option\(s\) 'max_iterr' "
                                          r"\(did you mean 'max_iter'\?\); known: "
                                          r"Model\.fit's parameters \(method, options"):
        model.fit(max_iterr=3)


@pytest.mark.parametrize("make, where, wrong, right", [
    (lambda T, kw: sdf.CPD(T, [np.ones((n, 2)) for n in T.shape], **kw), "CPD", "relweigth",
     "relweight"),
    (lambda T, kw: sdf.LMLRA(T, [np.ones((n, 2)) for n in T.shape], np.ones((2, 2, 2)), **kw),
     "LMLRA", "wieght", "weight"),
    (lambda T, kw: sdf.L2([np.ones((3, 2))], **kw), "L2", "targte", "target"),
])
def test_term_constructor_unknown_keyword_suggests_the_closest(T, make, where, wrong, right):
    with pytest.raises(ModelError, match=rf"^{where}: unknown argument\(s\) '{wrong}' "
                                         rf"\(did you mean '{right}'\?\); known: "
                                         rf"{where}'s parameters \("):
        make(T, {wrong: 1.0})


@pytest.mark.parametrize("display", ["yes", -1, 2.5, True])
def test_fit_display_is_validated_with_the_accepted_values(T, display):
    a = sdf.Variable(np.ones((6, 2)), name="a")
    model = sdf.Model(x=sdf.CPD(T, [a, np.ones((5, 2)), np.ones((4, 2))]))
    with pytest.raises(ValueError, match=r"^Model\.fit: display must be an integer >= 0 "
                                         r"\(0: silent; k: print a row"):
        model.fit(display=display)


def test_driver_display_is_validated_before_fitting(T):
    with pytest.raises(OptionError, match=r"^cpd: display must be an integer >= 0"):
        cpd(T, 2, display="yes")


def test_parameters_of_returns_a_fresh_list_each_time():
    # The names are cached per function; callers extend the list they get.
    from sdf._keywords import parameters_of

    def fit(data, rank, *, seed=None, **options):
        return data

    first = parameters_of(fit)
    first += ["extra"]
    assert parameters_of(fit) == ["data", "rank", "seed"]


def test_parameters_of_reads_unhashable_callables():
    from sdf._keywords import parameters_of

    class Fit:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, data, rank=1):
            return data

    assert parameters_of(Fit()) == ["data", "rank"]


def test_make_options_without_overrides_returns_the_options_given():
    from sdf.solvers import make_options

    given = sdf.NLSOptions(max_iter=7)
    assert make_options("nls", given) is given
    assert make_options("nls") == sdf.NLSOptions()
    assert make_options("nls", given, max_iter=9).max_iter == 9
    assert given.max_iter == 7
