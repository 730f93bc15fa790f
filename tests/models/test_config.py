"""The typed configuration: sizes by SNP count, the chromosome configuration, validation."""

from __future__ import annotations

import math

import pytest

from genosynth.errors import InputError
from genosynth.models.config import (CHROMOSOME_SNPS, MAX_DIT_TOKENS, GeneratorConfig, TrainingConfig,
                                     chromosome_config, config_for, dense_config, tiny_config)
from genosynth.models.vae import VAEConfig


def test_auto_size_switches_to_the_chromosome_configuration_above_the_threshold():
    assert config_for("auto", 805) == GeneratorConfig()
    assert config_for("auto", CHROMOSOME_SNPS) == GeneratorConfig()
    big = config_for("auto", CHROMOSOME_SNPS + 1)
    assert big.vae.embedding == "direct" and big.sampling.corr_guidance == "copula"
    assert config_for("default", 10**6) == GeneratorConfig()
    assert config_for("chromosome", 500).vae.embedding == "direct"
    assert config_for("tiny", 10**6) == tiny_config()


def test_auto_size_takes_the_dense_configuration_for_a_dense_region():
    """Up to the chromosome threshold a dense region gets the DiT's per-token MLP; a panel of SNPs far
    apart keeps the default; ``--size default`` is the default whatever the data."""
    from genosynth.models.ld_prior import dense_panel

    dense = config_for("auto", 5000, dense=True)
    assert dense == dense_config() and dense.dit.local_mlp == 128 and dense.dit.local_window == 1
    assert dense.replace(dit={"local_mlp": 0, "local_window": 0}) == GeneratorConfig()  # nothing else differs
    assert config_for("dense", 805) == dense_config()
    assert config_for("default", 5000, dense=True) == GeneratorConfig()
    assert config_for("auto", CHROMOSOME_SNPS + 1, dense=True).vae.embedding == "direct"
    spaced = dense_panel(["1"] * 805, [k * 3_000_000 for k in range(805)])  # an ancestry panel: SNPs Mb apart
    assert not spaced
    assert dense_panel(["1"] * 2000, list(range(0, 2_000_000, 1000)))  # 2,000 SNPs in 2 Mb
    assert not dense_panel([str(k) for k in range(2000)], [100] * 2000)  # one SNP per chromosome


@pytest.mark.parametrize("snps", [1, 20_000, 100_000, 1_000_000])
def test_the_dit_never_sees_more_than_its_token_budget(snps):
    cfg = chromosome_config(snps)
    vae_tokens = math.ceil(snps / cfg.vae.patch)
    assert math.ceil(vae_tokens / cfg.dit.patch_size) <= MAX_DIT_TOKENS
    assert cfg.dit.patch_size >= 2


def test_a_chromosome_of_100k_snps_gets_dit_patch_4_and_20k_patch_2():
    assert chromosome_config(100_000).dit.patch_size == 4  # 1,563 VAE tokens -> 391 DiT tokens
    assert chromosome_config(20_000).dit.patch_size == 2


def test_chromosome_config_round_trips_through_a_dict():
    cfg = chromosome_config(50_000, training={"vae_epochs": 3})
    again = GeneratorConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.training.vae_epochs == 3


def test_an_old_config_without_the_embedding_field_loads_as_factored():
    d = GeneratorConfig().to_dict()
    del d["vae"]["embedding"]
    assert GeneratorConfig.from_dict(d).vae.embedding == "factored"


def test_unknown_size_and_embedding_name_the_choices():
    with pytest.raises(InputError, match="auto, default, dense, chromosome, tiny"):
        config_for("huge", 10)
    with pytest.raises(InputError, match="factored, direct"):
        VAEConfig(embedding="sparse")


def test_old_configs_without_the_new_fields_load_with_the_old_behaviour():
    """Checkpoints written before ``vae.neighbour`` load as before; the default configuration keeps it off."""
    d = chromosome_config(20_000).to_dict()
    del d["vae"]["neighbour"]
    assert GeneratorConfig.from_dict(d).vae.neighbour is False
    assert GeneratorConfig().vae.neighbour is False and tiny_config().vae.neighbour is False


def test_chromosome_config_reads_snps_across_token_boundaries_and_takes_small_dit_batches():
    cfg = chromosome_config(20_000)
    assert cfg.vae.neighbour and cfg.vae.embedding == "direct"
    assert cfg.training.dit_batch_size == 64 and cfg.training.vae_batch_size == 128


def test_checkpoints_before_the_sampler_fields_keep_ddim_and_24_latent_steps_and_a_bad_sampler_names_the_choices():
    d = GeneratorConfig().to_dict()
    d["sampling"]["sampler"] = "dpm++2m"
    assert GeneratorConfig.from_dict(d).sampling.sampler == "dpm++2m"
    for key in ("sampler", "latent_steps", "latent_lr"):
        del d["sampling"][key]
    old = GeneratorConfig.from_dict(d).sampling
    assert (old.sampler, old.latent_steps, old.latent_lr) == ("ddim", 24, 0.05)
    with pytest.raises(InputError, match="ddim, dpm\\+\\+2m"):
        GeneratorConfig().replace(sampling={"sampler": "euler"})


def test_chromosome_dit_carries_a_windowed_per_token_mlp_and_old_configs_load_without_it():
    """chromosome_config's DiT has the per-token MLP (width 128, one token either side); the default and
    tiny configurations and checkpoints written before the fields keep the old network."""
    cfg = chromosome_config(20_000)
    assert cfg.dit.local_mlp == 128 and cfg.dit.local_window == 1
    assert GeneratorConfig().dit.local_mlp == 0 and tiny_config().dit.local_mlp == 0
    assert config_for("auto", 805).dit.local_mlp == 0
    d = cfg.to_dict()
    del d["dit"]["local_mlp"], d["dit"]["local_window"]
    old = GeneratorConfig.from_dict(d)
    assert old.dit.local_mlp == 0 and old.dit.local_window == 0


def test_chromosome_config_samples_stochastic_ddim_and_fits_its_temperature_with_the_same_draws():
    """The chromosome configuration draws latents with 20 stochastic DDIM steps (eta 1), calibrates and fits
    its decoder temperature with draws made the same way; the default configuration keeps 8 deterministic
    DPM-Solver++ steps and no fit."""
    cfg = chromosome_config(100_000)
    assert (cfg.sampling.sampler, cfg.sampling.steps, cfg.sampling.eta) == ("ddim", 20, 1.0)
    assert cfg.training.calibration_steps == cfg.sampling.steps and cfg.training.fit_temperature
    base = GeneratorConfig()
    assert (base.sampling.sampler, base.sampling.steps, base.sampling.eta) == ("dpm++2m", 8, 0.0)
    assert not base.training.fit_temperature and not dense_config().training.fit_temperature


def test_chromosome_dit_trains_weighted_towards_high_noise_and_the_others_stay_uniform():
    assert chromosome_config(100_000).training.dit_timestep_power == 1.0
    assert GeneratorConfig().training.dit_timestep_power == 0.0 == dense_config().training.dit_timestep_power
    with pytest.raises(InputError, match="dit_timestep_power"):
        TrainingConfig(dit_timestep_power=-0.5)
