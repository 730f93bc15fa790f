"""Tests of genosynth.training.transfer: aligning a private cohort to a public model and adapting it under DP."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from genosynth.errors import InputError
from genosynth.models.checkpoint import load_checkpoint
from genosynth.models.config import tiny_config
from genosynth.sampling.generator import Generator
from genosynth.training.plain import train_generator
from genosynth.training.private import train_private
from genosynth.training.transfer import (align_to_model, correct_public_prior, load_public_model,
                                         public_frequencies)
from _testlib import small_privacy

V = 40


@pytest.fixture(scope="module")
def panels(sim_cohort):
    """Public: 40 AFR + 40 EUR people; private: 20 each of AFR, EUR and EAS (EAS is new to the public panel)."""
    pub = np.concatenate([np.arange(20, 60), np.arange(120, 160)])
    priv = np.concatenate([np.arange(0, 20), np.arange(100, 120), np.arange(200, 220)])
    return sim_cohort.subset(samples=pub, variants=np.arange(V)), sim_cohort.subset(samples=priv, variants=np.arange(V))


@pytest.fixture(scope="module")
def public_model(panels, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("public") / "public.pt")
    train_generator(panels[0], config=tiny_config(), seed=1, checkpoint=path)
    return path


def _swap(cohort, cols):
    """The cohort with REF/ALT swapped (and alleles flipped) at columns ``cols``."""
    v = cohort.variants.copy()
    ref = v.loc[cols, "ref"].copy()
    v.loc[cols, "ref"], v.loc[cols, "alt"] = v.loc[cols, "alt"].to_numpy(), ref.to_numpy()
    a = cohort.alleles.copy()
    a[:, cols] = 1 - a[:, cols]
    return dataclasses.replace(cohort, alleles=a, variants=v)


def test_alignment_flips_swapped_alleles_and_reorders(panels):
    private = panels[1]
    swapped = _swap(private, [3, 7])
    order = np.random.default_rng(0).permutation(V)
    shuffled = swapped.subset(variants=order)
    lines = []
    out, report = align_to_model(shuffled, private.variants, log=lines.append)
    assert np.array_equal(out.alleles, private.alleles)
    assert list(out.variants["id"]) == list(private.variants["id"])
    assert report == {"model_snps": V, "matched": V, "flipped": 2, "filled": 0}
    assert "2 with REF/ALT swapped" in lines[0]


def test_alignment_fills_missing_snps_and_reports_them(panels):
    private = panels[1]
    out, report = align_to_model(private.subset(variants=np.arange(5, V)), private.variants,
                                 fill=np.full(V, 0.5), seed=0)
    assert report["filled"] == 5 and report["matched"] == V - 5
    assert np.array_equal(out.alleles[:, 5:], private.alleles[:, 5:])
    assert set(np.unique(out.alleles[:, :5])) <= {0, 1}
    with pytest.raises(InputError, match="fill"):
        align_to_model(private.subset(variants=np.arange(5, V)), private.variants)


def test_alignment_refuses_small_overlap_and_extra_snps(panels):
    private = panels[1]
    with pytest.raises(InputError, match=r"only 10 of the public model's 40 SNPs"):
        align_to_model(private.subset(variants=np.arange(10)), private.variants, fill=np.full(V, 0.5))
    with pytest.raises(InputError, match=r"5 SNP\(s\) of the private cohort are not in the public model.*plink2"):
        align_to_model(private, private.variants.iloc[:35])
    other = private.variants.copy()
    other.loc[0, "alt"] = "G" if other.loc[0, "alt"] != "G" and other.loc[0, "ref"] != "G" else "A"
    with pytest.raises(InputError, match=r"1 SNP\(s\)"):  # same position, other alleles: not the same SNP
        align_to_model(private, other)


def test_correction_keeps_public_band_when_the_release_is_pure_noise():
    rng = np.random.default_rng(0)
    public = np.zeros((2, 50, 3))
    public[:, :, 0] = 0.6
    noise = rng.normal(0, 0.5, size=(2, 50, 3))
    private = np.clip(public + noise, -1, 1)
    private[:, -3:, :] = 0.0  # outside the cohort
    out, kept = correct_public_prior(public, private, np.full((2, 50), 0.3), np.array([10.0, 10.0]),
                                     noise_multiplier=5.0, clip=3.0)
    assert out.shape == (2, 50, 3)
    assert np.abs(out[:, :-3, 0] - 0.6).max() < 0.1  # noise explained: public band kept
    strong = public.copy()
    strong[:, :, 1] = -0.7  # a large, noise-free deviation is kept
    out2, _ = correct_public_prior(public, np.where(private != 0, strong, 0.0), np.full((2, 50), 0.3),
                                   np.array([1e4, 1e4]), noise_multiplier=1.0, clip=1.0)
    assert np.abs(out2[:, :-3, 1] + 0.7).max() < 0.05


@pytest.fixture(scope="module")
def adapted(panels, public_model, tmp_path_factory):
    payload = load_public_model(public_model)
    private, report = align_to_model(panels[1], Generator.from_payload(payload).variants,
                                     fill=public_frequencies(payload, n=50))
    path = str(tmp_path_factory.mktemp("adapted") / "model.pt")
    lines: list[str] = []
    import genosynth.training.private as private_module

    original, calls = private_module.calibrate_frequencies, []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    private_module.calibrate_frequencies = spy
    try:
        model = train_private(private, config=tiny_config(), privacy=small_privacy(), public_model=payload, seed=2,
                              deterministic_noise=True, checkpoint=path, log=lines.append)
    finally:
        private_module.calibrate_frequencies = original
    return model, path, lines, payload, calls


def test_adapted_calibration_is_iterated_on_many_rows_with_a_wide_bound(adapted):
    from genosynth.training.private import PUBLIC_CALIBRATION_BOUND, PUBLIC_CALIBRATION_ROWS

    (kwargs,) = adapted[4]
    assert kwargs["iters"] > 1 and kwargs["bound"] == PUBLIC_CALIBRATION_BOUND > 3.0
    assert kwargs["rows"] == max(tiny_config().training.calibration_rows, PUBLIC_CALIBRATION_ROWS)


def test_adaptation_starts_from_the_public_model_and_spends_no_vae_budget(adapted):
    model, path, lines, payload, _ = adapted
    ck = load_checkpoint(path)
    assert model.vocabulary == ["AFR", "EAS", "EUR"]
    assert "vae/dpsgd" not in model.privacy["breakdown"]
    assert model.privacy["epsilon"] <= 8.0 * (1 + 1e-9)
    # the VAE is the public one, but for the per-label biases (set from the DP release)
    for key, value in payload["state"]["vae"].items():
        if key not in ("label_bias", "snp_bias"):
            assert torch.equal(ck["state"]["vae"][key], value), key
    assert ck["public_model"]["labels"] == ["AFR", "EUR"]
    assert ck["latent_scale"] == payload["latent_scale"]
    assert any("public model" in line for line in lines)
    prior = ck["correlation_prior"]
    assert prior["private"] and prior["info"]["public_baseline"]
    assert prior["window"] >= 4
    synthetic = model.sample(30, seed=0)
    assert set(synthetic.samples["super_pop"]) == {"AFR", "EAS", "EUR"}


def test_new_labels_get_the_mean_public_embedding_row(panels, public_model):
    from genosynth.models.checkpoint import build_models
    from genosynth.training.transfer import adapt_config, adopt_public_weights

    payload = load_public_model(public_model)
    cfg = adapt_config(tiny_config(), payload)
    vae, dit, _ = build_models(cfg, n_variants=V, n_classes=2, n_labels=3)
    adopt_public_weights(vae, dit, payload, ["AFR", "EAS", "EUR"])
    table = dit.state_dict()[[k for k in dit.state_dict() if k.endswith("embedding_table.weight")][0]]
    st = payload["state"]
    pub = {**st["dit"], **st["ema"]["shadow"]}
    pub_table = pub[[k for k in pub if k.endswith("embedding_table.weight")][0]]  # AFR, EUR, null
    assert torch.allclose(table[0], pub_table[0]) and torch.allclose(table[2], pub_table[1])
    assert torch.allclose(table[1], pub_table[:2].mean(dim=0))
    assert torch.allclose(table[3], pub_table[2])


def test_unaligned_cohort_and_both_public_inputs_are_refused(panels, public_model):
    payload = load_public_model(public_model)
    with pytest.raises(InputError, match="aligned"):
        train_private(panels[1].subset(variants=np.arange(30)), config=tiny_config(), privacy=small_privacy(),
                      public_model=payload)
    with pytest.raises(InputError, match="not both"):
        train_private(panels[1], config=tiny_config(), privacy=small_privacy(), public_model=payload,
                      public_reference=panels[0])


def test_unfinished_or_missing_public_model_is_refused(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_public_model(str(tmp_path / "none.pt"))


def test_adapted_epsilon_matches_dp_accounting(adapted):
    """ACCEPTANCE 3 of issue 19 for --from-model: the whole run's epsilon equals an independent computation."""
    dpa = pytest.importorskip("dp_accounting")
    from dp_accounting.rdp import RdpAccountant

    from genosynth.privacy import RDP_ORDERS

    _, path, _, _, _ = adapted
    ck = load_checkpoint(path)
    rep = ck["privacy"]
    events = {e["name"] for e in ck["privacy_state"]["events"]}
    assert events == {"allele_frequencies", "diffusion/stage1", "diffusion/stage2", "correlation_prior",
                      "ancestry_spread"}  # no VAE event: the public VAE costs nothing
    parts = []
    for e in ck["privacy_state"]["events"]:
        g = dpa.GaussianDpEvent(e["noise_multiplier"])
        if e["kind"] == "subsampled_gaussian":
            g = dpa.PoissonSampledDpEvent(e["sample_rate"], g)
        parts.append(dpa.SelfComposedDpEvent(g, e["count"]))
    acc = RdpAccountant(list(RDP_ORDERS), dpa.NeighboringRelation.REPLACE_SPECIAL)
    acc.compose(dpa.ComposedDpEvent(parts))
    assert rep["epsilon"] == pytest.approx(acc.get_epsilon(rep["delta"]), rel=0.01)


def test_frequencies_are_denoised_towards_the_public_ones():
    """A label the public panel has keeps ~its public frequencies; a new label that is a mix of public ones is
    denoised towards that mix; the counts fitted on all SNPs are far closer than the released ones."""
    from genosynth.privacy.releases import release_label_frequencies

    rng = np.random.default_rng(0)
    v, n = 400, 40
    p = rng.uniform(0.1, 0.9, size=(3, v))
    p[2] = np.clip(0.6 * p[0] + 0.4 * p[1] + rng.normal(0, 0.02, v), 0.05, 0.95)  # admixed, new to the public
    y = np.repeat([0, 1, 2], n)
    dos = rng.binomial(2, p[y]).astype(np.float64)  # (3n, V)
    public = np.vstack([p[0], p[1], np.full(v, np.nan)])
    errors = {"public": [], "base": []}
    count_errors = {"public": [], "base": []}
    for draw in range(4):
        rel = release_label_frequencies(dos, y, 3, noise_multiplier=0.5, rng=np.random.default_rng(draw),
                                        denoiser="shrink", public_freq=public)
        base = release_label_frequencies(dos, y, 3, noise_multiplier=0.5, rng=np.random.default_rng(draw),
                                         denoiser="shrink")
        assert rel["public_weight"][0] < 0.5 and 0.0 < rel["public_weight"][2] < 1.0
        assert rel["mix"].sum() == pytest.approx(1.0)
        for key, r in (("public", rel), ("base", base)):
            errors[key].append(np.abs(r["freq"] - p).mean(axis=1))  # (3,)
            count_errors[key].append(np.abs(r["counts"] - n))  # (3,)
    err, base_err = np.mean(errors["public"], axis=0), np.mean(errors["base"], axis=0)
    assert err[0] < 0.7 * base_err[0] and err[2] < 0.9 * base_err[2]
    assert np.mean(np.array(count_errors["public"])[:, :2]) < 0.3 * np.mean(np.array(count_errors["base"])[:, :2])


def test_adapted_config_decodes_with_the_copula_unless_told_otherwise(public_model):
    from genosynth.training.transfer import ADAPTED_CORR_GUIDANCE, adapt_config

    payload = load_public_model(public_model)
    assert adapt_config(tiny_config(), payload).sampling.corr_guidance == ADAPTED_CORR_GUIDANCE == "copula"
    chosen = tiny_config().replace(sampling={"corr_guidance": "latent"})
    assert adapt_config(chosen, payload).sampling.corr_guidance == "latent"


def test_release_centred_on_the_public_frequencies_keeps_the_plan(panels, adapted, tmp_path):
    """``frequency_centre="public"``: the same events and noise multipliers as the default run (the centre and its
    clip change the sensitivity's content, not the plan), recorded in the checkpoint; ε stays within budget."""
    _, path, _, payload, _ = adapted
    private, _ = align_to_model(panels[1], Generator.from_payload(payload).variants,
                                fill=public_frequencies(payload, n=50))
    out = str(tmp_path / "centred.pt")
    train_private(private, config=tiny_config(), privacy=small_privacy(frequency_centre="public"),
                  public_model=payload, seed=2, deterministic_noise=True, checkpoint=out)
    ck, base = load_checkpoint(out), load_checkpoint(path)
    assert ck["privacy_state"]["events"] == base["privacy_state"]["events"]
    assert ck["privacy"]["epsilon"] <= small_privacy().epsilon
    assert ck["privacy_config"]["frequency_centre"] == "public" and ck["privacy_config"]["frequency_clip"] is None
    assert base["privacy_config"]["frequency_centre"] == "one"
