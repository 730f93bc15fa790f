"""Nothing written under --epsilon holds an un-noised private statistic or a per-person value.

One tiny DP run writes a checkpoint, log lines, a sample (VCF + samples table + privacy sidecar);
every array, number and string in them is checked against the private cohort's exact allele
frequencies (overall and per label, as class frequencies too), label counts and mix, correlation
band, genotype rows and latents. The classic leaks are the VAE's label-bias initial values and the
correlation prior: both are checked at the source as well. Every check runs three times: training
from scratch, adapting a public model (``public_model``, ``--from-model``) trained on other people
whose panel lacks one of the private labels, and training a case/control model
(``phenotype_column``), whose exact per-(label, phenotype) frequencies, counts and case fractions
are checked too.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

import genosynth.models.vae as vae_module
from genosynth.training.data import class_frequencies, prepare_data
from _testlib import label_subset
from genosynth.models.checkpoint import load_checkpoint
from genosynth.models.config import tiny_config
from genosynth.sampling.write import write_synthetic
from genosynth.privacy import correlation_band
from genosynth.training.dp_plan import PrivacyConfig
from genosynth.training.private import train_private

PC = dict(epsilon=8.0, delta=1e-3, batch_size=20, correlation_window=4, stage1_epochs=1, timesteps_split=45,
          latent_clip=1.0)


@pytest.fixture(scope="module")
def small(sim_cohort):
    """62 people, unequal labels (22 / 25 / 15: no count or share equals a public parameter) x 40 SNPs."""
    return label_subset(sim_cohort, (22, 25, 15), n_variants=40)


@pytest.fixture(scope="module")
def public_payload(sim_cohort, tmp_path_factory):
    """A tiny plain model of 40 other AFR and 40 other EUR people (no EAS), as --from-model loads it."""
    from genosynth.training.plain import train_generator
    from genosynth.training.transfer import load_public_model

    idx = np.concatenate([np.arange(50, 90), np.arange(150, 190)])
    path = str(tmp_path_factory.mktemp("public") / "public.pt")
    train_generator(sim_cohort.subset(samples=idx, variants=np.arange(40)), config=tiny_config(), seed=2,
                    checkpoint=path)
    return load_public_model(path)


@pytest.fixture(scope="module")
def pheno_small(sim_pheno_cohort):
    """``small``'s design (22 / 25 / 15 people x 40 SNPs) with a 0/1 phenotype."""
    return label_subset(sim_pheno_cohort, (22, 25, 15), n_variants=40)


@pytest.fixture(scope="module", params=["scratch", "from_model", "phenotype"])
def outputs(request, small, tmp_path_factory):
    public = request.getfixturevalue("public_payload") if request.param == "from_model" else None
    cohort, config = small, tiny_config()
    if request.param == "phenotype":
        cohort, config = request.getfixturevalue("pheno_small"), tiny_config().replace(phenotype_column="phenotype")
    folder = tmp_path_factory.mktemp("leak")
    init_args = []
    original = vae_module.GenotypeVAE.init_biases

    def spy(self, class_freq, label_class_freq=None):
        init_args.append((class_freq.clone(), None if label_class_freq is None else label_class_freq.clone()))
        return original(self, class_freq, label_class_freq)

    vae_module.GenotypeVAE.init_biases = spy
    try:
        lines: list[str] = []
        model = train_private(cohort, config=config, privacy=PrivacyConfig(**PC), seed=7, deterministic_noise=True,
                              checkpoint=str(folder / "m.pt"), log=lines.append, public_model=public)
    finally:
        vae_module.GenotypeVAE.init_biases = original
    written = write_synthetic(model, str(folder / "syn"), "vcf", n=8, seed=1)
    return {"ck": load_checkpoint(str(folder / "m.pt")), "lines": lines, "written": written, "init": init_args,
            "folder": folder, "cohort": cohort}


def _private_stats(cohort):
    """Every exact aggregate a careless implementation would store: name -> float64 array."""
    data = prepare_data(cohort, label_column="super_pop")
    labels = cohort.labels("super_pop")
    vocab = sorted(set(labels))
    g = cohort.genotypes().astype(np.float64)  # (N, V)
    stats = {"af": g.mean(0) / 2}
    for k, lab in enumerate(vocab):
        stats[f"af_{lab}"] = g[labels == lab].mean(0) / 2
        stats[f"band_{lab}"] = correlation_band(g[labels == lab], window=4)
    counts = np.array([(labels == lab).sum() for lab in vocab], dtype=float)
    stats["counts"], stats["mix"] = counts, counts / counts.sum()
    for pc in (0.0, 0.5):
        overall, per = class_frequencies(data.alleles, data.labels, len(vocab), data.n_classes, pseudo_count=pc)
        stats[f"class_freq_{pc}"] = overall.double().numpy()
        stats[f"label_class_freq_{pc}"] = per.double().numpy()
        stats[f"log_label_minus_overall_{pc}"] = (per.clamp_min(1e-4).log()
                                                  - overall.clamp_min(1e-4).log()).double().numpy()
    if "phenotype" in cohort.samples.columns and cohort.samples["phenotype"].notna().any():
        stats.update(_phenotype_stats(cohort, labels, vocab, g))
    return stats


def _phenotype_stats(cohort, labels, vocab, g):
    """The exact aggregates of the phenotype path: per-(label, phenotype) frequencies, counts, case fractions."""
    from genosynth.training.data import group_frequencies

    pheno = cohort.samples["phenotype"].to_numpy().astype(np.int64)
    stats = {}
    for lab in vocab:
        for p in (0, 1):
            stats[f"af_{lab}_pheno{p}"] = g[(labels == lab) & (pheno == p)].mean(0) / 2
    stats["case_counts"] = np.array([((labels == lab) & (pheno == 1)).sum() for lab in vocab], dtype=float)
    stats["control_counts"] = np.array([((labels == lab) & (pheno == 0)).sum() for lab in vocab], dtype=float)
    stats["case_fraction"] = np.array([pheno[labels == lab].mean() for lab in vocab])
    stats["group_counts"] = np.stack([stats["control_counts"], stats["case_counts"]], axis=1).ravel()  # (2L,)
    data = prepare_data(cohort, label_column="super_pop", phenotype_column="phenotype")
    for pc in (0.0, 0.5):
        _, per = class_frequencies(data.alleles, data.labels, len(vocab), data.n_classes, pseudo_count=pc)
        stats[f"group_class_freq_{pc}"] = group_frequencies(data, per, pseudo_count=pc).double().numpy()
    return stats


def _walk(obj, path="ck"):
    """Yield (path, value) for every leaf of nested dicts/lists/tensors."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        if obj and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in obj):
            yield path, np.asarray(obj, dtype=np.float64)
        else:
            for i, v in enumerate(obj):
                yield from _walk(v, f"{path}[{i}]")
    elif isinstance(obj, torch.Tensor):
        yield path, obj.detach().double().numpy()
    elif isinstance(obj, np.ndarray):
        yield path, obj.astype(np.float64) if obj.dtype != object else obj
    else:
        yield path, obj


def _contains(arr: np.ndarray, stat: np.ndarray, tol: float = 1e-5) -> bool:
    """Whether ``stat`` appears in ``arr`` exactly (up to float32 rounding), as a whole or a row."""
    arr, stat = np.asarray(arr, dtype=np.float64), np.asarray(stat, dtype=np.float64)
    if stat.size < 3 or arr.size < stat.size:
        return False
    flat = arr.reshape(-1, stat.size) if arr.size % stat.size == 0 else None
    if flat is not None and np.any(np.all(np.abs(flat - stat.reshape(1, -1)) < tol, axis=1)):
        return True
    if arr.ndim >= 1 and arr.shape[-1] == stat.shape[-1] and stat.ndim == 1:
        rows = arr.reshape(-1, stat.shape[-1])
        return bool(np.any(np.all(np.abs(rows - stat) < tol, axis=1)))
    return False


def test_checkpoint_has_no_exact_private_statistic(outputs):
    stats = _private_stats(outputs["cohort"])
    leaves = [(p, v) for p, v in _walk(outputs["ck"]) if isinstance(v, np.ndarray) and v.dtype != object]
    assert leaves
    for name, stat in stats.items():
        for path, arr in leaves:
            assert not _contains(arr, stat), f"{path} holds the exact private {name}"


def test_checkpoint_has_no_rows_latents_losses_or_exact_counts(outputs):
    ck, small = outputs["ck"], outputs["cohort"]
    g = small.genotypes()
    rows = small.alleles
    n, v = small.n_samples, small.n_variants
    for path, arr in _walk(ck):
        if isinstance(arr, np.ndarray) and arr.dtype != object and arr.ndim >= 2:
            # no person-indexed array: nothing with n or 2n leading rows (genotypes, haplotypes, latents)
            assert arr.shape[0] not in (n, 2 * n), f"{path} has a per-person axis {arr.shape}"
            if arr.shape[-1] == v:
                flat = arr.reshape(-1, v)
                for ref in (g, rows):
                    hit = (np.abs(flat[:, None, :] - ref[None].astype(np.float64)) < 1e-9).all(axis=2)
                    assert not hit.any(), f"{path} holds a training row"
    assert ck["curves"] == {"vae": [], "dit": []} and ck["metrics"] == {}
    assert ck["n_training_people"] == n  # public under zero-out neighbours
    exact_mix = {lab: float((small.labels("super_pop") == lab).mean()) for lab in ck["labels"]}
    assert all(abs(ck["label_mix"][k] - exact_mix[k]) > 1e-9 for k in exact_mix)
    prior = ck["correlation_prior"]
    assert prior["private"] is True
    exact_counts = {lab: int((small.labels("super_pop") == lab).sum()) for lab in ck["labels"]}
    assert prior["info"]["n_per_label"] != exact_counts
    assert all(abs(prior["info"]["n_per_label"][k] - exact_counts[k]) > 1e-9 for k in exact_counts)
    if ck.get("phenotype_column"):  # the case fractions are the DP release's, not the cohort's
        pheno = small.samples["phenotype"].to_numpy()
        exact_cf = {lab: float(pheno[small.labels("super_pop") == lab].mean()) for lab in ck["labels"]}
        assert set(ck["case_fraction"]) == set(exact_cf)
        assert all(abs(ck["case_fraction"][k] - exact_cf[k]) > 1e-9 for k in exact_cf)


def test_vae_bias_init_and_correlation_prior_are_noised(outputs, request):
    stats = _private_stats(outputs["cohort"])
    if "from_model" in request.node.callspec.id:  # the public decoder's biases are kept: no init from the cohort
        assert outputs["init"] == []
    else:
        (overall, per_label), = outputs["init"]
        for pc in (0.0, 0.5):
            assert np.abs(overall.double().numpy() - stats[f"class_freq_{pc}"]).max() > 1e-3
            assert np.abs(per_label.double().numpy() - stats[f"label_class_freq_{pc}"]).max() > 1e-3
    bands = np.asarray(outputs["ck"]["correlation_prior"]["bands"], dtype=np.float64)[:, :, :4]  # (L, V, 4)
    for k, lab in enumerate(outputs["ck"]["correlation_prior"]["labels"]):
        assert np.abs(bands[k] - stats[f"band_{lab}"]).max() > 1e-2


def test_ancestry_spread_is_noised(outputs):
    """The checkpoint's within-label ancestry covariances differ from the exact ones (same directions)."""
    spread = outputs["ck"]["ancestry_spread"]
    basis, freq = np.asarray(spread["basis"]), np.asarray(spread["freq"])  # (V, k), (L, V): released
    small = outputs["cohort"]
    labels = small.labels("super_pop")
    g = small.genotypes().astype(np.float64)
    for k, lab in enumerate(outputs["ck"]["labels"]):
        coords = (g[labels == lab] / 2 - freq[k]) @ basis  # (n_l, k), exact and private
        exact = coords.T @ coords / len(coords)  # un-noised second moment
        assert np.abs(np.asarray(spread["cov"][k]) - exact).max() > 1e-3
        assert not _contains(np.asarray(spread["cov"]), exact)


def test_log_sidecar_and_sample_outputs_hold_only_the_report(outputs):
    text = "\n".join(outputs["lines"]).lower()
    for word in ("loss", "accuracy", "nll", "norm="):
        assert word not in text
    sidecar = [p for p in outputs["written"] if p.endswith(".privacy.json")]
    assert sidecar
    rep = json.load(open(sidecar[0]))
    assert set(rep) <= {"epsilon", "delta", "optimal_order", "accounting", "breakdown", "events", "target_epsilon"}
    allowed = {"name", "kind", "noise_multiplier", "sample_rate", "count", "latent_clip", "alpha_bar", "k", "rho"}
    for ev in rep["events"]:
        assert set(ev) <= allowed
    with gzip.open(outputs["folder"] / "syn.vcf.gz", "rt") as fh:
        meta = [ln for ln in fh if ln.startswith("##")]
    stats = _private_stats(outputs["cohort"])
    header_numbers = []
    for ln in meta:
        header_numbers += [float(x) for x in __import__("re").findall(r"-?\d+\.\d{4,}", ln)]
    for name, stat in stats.items():
        flat = np.asarray(stat).ravel()
        assert not any(np.any(np.abs(flat - x) < 1e-9) for x in header_numbers if 0 < abs(x) < 1), name
