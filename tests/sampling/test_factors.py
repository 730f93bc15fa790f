"""Copula factors solved after training and stored in the checkpoint (genosynth.sampling.factors)."""

import numpy as np
import pytest

from genosynth.sampling import ld_guidance
from genosynth.sampling.factors import default_signature, solve_stored_factors, stored_cache
from genosynth.sampling.generator import Generator


def _refuse_solving(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a copula factor was solved at sampling")

    monkeypatch.setattr(ld_guidance, "_label_factor", refuse)


def test_training_stores_each_labels_factor_for_the_default_request(trained):
    model, path = trained
    stored = Generator.load(path).stored_factors
    assert stored is not None
    assert stored["signature"] == default_signature(model)
    assert sorted(stored["labels"]) == list(range(len(model.vocabulary)))
    v, w = model.corr_prior.n_variants, model._corr_config(stored["signature"]["method"]).window
    for d in stored["labels"].values():
        assert d["beta"].shape == (v, min(w, model.corr_prior.window)) and d["beta"].dtype == np.float32
        assert d["s"].shape == (v,) and np.all((d["s"] > 0) & (d["s"] <= 1))
        assert np.abs(d["beta"]).sum() > 0  # a band with LD gives the process weights


def test_stored_factors_are_a_deterministic_function_of_the_model(trained):
    model, path = trained
    again = solve_stored_factors(Generator.load(path))
    stored = model.stored_factors
    assert again["signature"] == stored["signature"]
    for j, d in stored["labels"].items():
        np.testing.assert_allclose(again["labels"][j]["beta"], d["beta"], atol=1e-5)
        np.testing.assert_allclose(again["labels"][j]["s"], d["s"], atol=1e-5)


def test_the_solve_shows_a_bar_of_labels_and_the_same_factors(trained, capsys):
    model, path = trained
    shown = solve_stored_factors(Generator.load(path), progress=True)
    bar = capsys.readouterr().err
    n = len(model.vocabulary)
    assert "copula factors" in bar and f"{n}/{n}" in bar and "label" in bar
    for j, d in model.stored_factors["labels"].items():  # the bar changes nothing
        np.testing.assert_allclose(shown["labels"][j]["beta"], d["beta"], atol=1e-5)


def test_the_default_request_samples_without_solving_and_others_solve(trained, monkeypatch):
    model, path = trained
    fresh = Generator.load(path)
    _refuse_solving(monkeypatch)
    rows = fresh.sample(40, seed=3)  # the default options: the stored factors
    assert rows.n_samples == 40
    with pytest.raises(AssertionError, match="solved at sampling"):
        fresh.sample(10, seed=3, temperature=0.9)  # another request: its own factors
    fresh.stored_factors = None
    fresh._corr_cache.clear()
    with pytest.raises(AssertionError, match="solved at sampling"):
        fresh.sample(10, seed=3)  # a checkpoint without them (older genosynth): per request, as before


def test_stored_cache_is_empty_for_another_signature(trained):
    model, _ = trained
    sig = dict(default_signature(model))
    assert len(stored_cache(model.stored_factors, sig)) == len(model.vocabulary)
    sig["steps"] += 1
    assert stored_cache(model.stored_factors, sig) == {}
    assert stored_cache(None, sig) == {}


def test_a_model_that_decodes_without_the_copula_stores_none(trained):
    model, path = trained
    fresh = Generator.load(path)
    fresh.config = fresh.config.replace(sampling={"corr_guidance": "none"})
    assert default_signature(fresh) is None and solve_stored_factors(fresh) is None


def test_stored_factors_are_solved_from_more_rows_than_a_request_when_the_panel_allows():
    """A request solves from 64 rows per label; the one stored solve uses up to 2^20 rows x SNPs (at most
    512 rows, never fewer than 64): on the 805-SNP split this moved the 0-1 kb and 1-10 kb LD-decay bins
    towards the held-out people's (RESULTS.md, session 12); chromosomes keep 64 (the solve's cost)."""
    from genosynth.sampling.factors import factor_rows

    assert factor_rows(805, 64) == 512 and factor_rows(5_000, 64) == 209
    assert factor_rows(20_000, 64) == 64 and factor_rows(100_000, 64) == 64
    assert factor_rows(10**7, 64) == 64
