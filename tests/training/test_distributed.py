"""Training on two CPU processes under torchrun (genosynth.training.distributed): shards, DDP, rank 0 writes.

Two launches of ``python -m torch.distributed.run --standalone --nproc_per_node 2`` (gloo, a free
port chosen by the c10d rendezvous), about 10-20 s each on 2 loaded cores:

* a worker script calling :func:`train_generator` checks that both ranks end with the same weights
  and that a run killed after DiT epoch 1 and resumed ends bit-identical to an uninterrupted one;
* ``genosynth train`` itself checks that rank 0 alone writes one loadable checkpoint, ``PREFIX.log``
  and ``PREFIX.train.json``, the other rank prints nothing, and the quality matches one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from genosynth.training.distributed import Shards

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

WORKER = '''
import hashlib, json, sys
import torch
from genosynth.io import read_cohort
from genosynth.models.config import tiny_config
from genosynth.training import distributed
from genosynth.training.plain import train_generator

folder = sys.argv[1]
torch.set_num_threads(1)
distributed.init_from_env("cpu")
rank = torch.distributed.get_rank()
cohort = read_cohort(hapt=f"{folder}/real.hapt", legend=f"{folder}/real.legend", samples=f"{folder}/real.samples.tsv")
cohort = cohort.subset(samples=list(range(0, 300, 3)), variants=list(range(100)))  # 100 people x 100 SNPs
cfg = tiny_config(training={"dit_epochs": 3})


def digest(model):
    h = hashlib.sha256()
    for module in (model.vae, model.dit):
        for name, t in sorted(module.state_dict().items()):
            h.update(name.encode() + t.detach().cpu().contiguous().numpy().tobytes())
    h.update(model.calibration.numpy().tobytes())
    return h.hexdigest()


class Kill(Exception):
    pass


def kill(stage, epoch):
    if stage == "dit" and epoch == 1:
        raise Kill


full = train_generator(cohort, config=cfg, seed=7, checkpoint=f"{folder}/full.pt")
try:
    train_generator(cohort, config=cfg, seed=7, checkpoint=f"{folder}/cut.pt", callback=kill)
except Kill:
    pass
torch.distributed.barrier()  # rank 0 has written cut.pt before anyone reads it
resumed = train_generator(cohort, config=cfg, checkpoint=f"{folder}/cut.pt", resume=True)
with open(f"{folder}/rank{rank}.json", "w") as fh:
    json.dump({"full": digest(full), "resumed": digest(resumed), "loss": full.meta["curves"]["dit"][-1]["loss"]}, fh)
distributed.shutdown()
'''


@pytest.fixture(scope="module")
def files(sim_cohort, tmp_path_factory):
    """``sim_cohort`` (300 people x 300 SNPs, 3 populations) as .hapt + legend + sample table."""
    from genosynth.io import write_cohort
    from genosynth.io.samples import write_sample_table

    folder = tmp_path_factory.mktemp("dist")
    write_cohort(sim_cohort, str(folder / "real"), "hapt")
    write_sample_table(sim_cohort, str(folder / "real.samples.tsv"))
    return folder


def _torchrun(args, *, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run([*TORCHRUN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_shards_cover_every_row_in_equal_slices():
    n_rows, world = 11, 3
    slices = [Shards(rank=r, world=world, seed=1).rows(n_rows, torch.Generator().manual_seed(4)) for r in range(world)]
    assert {len(s) for s in slices} == {4}  # ceil(11 / 3), equal so the collectives match
    together = torch.cat(slices)
    assert set(together.tolist()) == set(range(n_rows))  # every row; one of them twice (wrapping)
    assert torch.equal(together[:n_rows], torch.randperm(n_rows, generator=torch.Generator().manual_seed(4)))
    again = Shards(rank=1, world=world, seed=1).rows(n_rows, torch.Generator().manual_seed(4))
    assert torch.equal(again, slices[1])  # a function of the generator state alone
    assert Shards(rank=0, world=2, seed=1).batch_size(32) == 16 and Shards(rank=0, world=3, seed=1).batch_size(32) == 11


def test_noise_differs_by_rank_and_repeats_by_epoch():
    def draw(rank, stage, epoch):
        return torch.rand(5, generator=Shards(rank=rank, world=2, seed=9).noise(stage, epoch))

    assert torch.equal(draw(0, "vae", 3), draw(0, "vae", 3))  # a resumed epoch redraws its noise
    for other in (draw(1, "vae", 3), draw(0, "vae", 4), draw(0, "dit", 3)):
        assert not torch.equal(draw(0, "vae", 3), other)
    assert Shards.current(seed=1) is None  # no process group here: the one-process path


def test_two_ranks_share_weights_and_resume_exactly(files):
    (files / "worker.py").write_text(WORKER, encoding="utf-8")
    _torchrun([str(files / "worker.py"), str(files)], cwd=files)
    ranks = [json.loads((files / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # DDP kept the weights, EMA and calibration equal on both ranks
    assert ranks[0]["resumed"] == ranks[0]["full"]  # killed after DiT epoch 1 and resumed: the same model
    assert os.path.exists(files / "full.pt") and not [p for p in os.listdir(files) if ".tmp" in p]


def test_torchrun_train_matches_one_process(files, sim_cohort):
    """``genosynth train`` on 2 processes vs ``train_generator`` on one, same cohort, config and seed.

    Measured (tiny config, 2 + 2 epochs, seeds 1-3, load ~5-7 on 2 cores): VAE reconstruction
    accuracy 1 process 0.874 / 0.863 / 0.857, 2 processes 0.874 / 0.867 / 0.858 (largest gap
    0.004, while seeds spread by 0.017); AF r of 300 sampled people 0.9944 / 0.9948 / 0.9945 vs
    0.9944 / 0.9955 / 0.9948 (largest gap 0.0007). Tolerances: accuracy within 0.015 (about the
    seed spread, 4x the largest gap), AF r within 0.004 and >= 0.99.
    """
    from genosynth.models.config import tiny_config
    from genosynth.sampling.generator import Generator
    from genosynth.training.plain import train_generator

    prefix = files / "two" / "model"
    done = _torchrun(["-m", "genosynth.cli", "train", "--hapt", "real.hapt", "--legend", "real.legend",
                      "--samples", "real.samples.tsv", "--size", "tiny", "--seed", "3", "--out", str(prefix),
                      "--no-progress"], cwd=files)
    assert sorted(os.listdir(prefix.parent)) == ["model.log", "model.pt", "model.train.json"]
    assert done.stdout.count("VAE:") == 1 and done.stdout.count("Loaded 300 samples") == 1  # rank 1 is quiet
    log = (prefix.parent / "model.log").read_text()
    assert log.count("Command:") == 1 and "processes: 2" in log and "seed: 3" in log
    assert json.loads((prefix.parent / "model.train.json").read_text())["seed"] == 3
    two = Generator.load(f"{prefix}.pt")
    torch.set_num_threads(1)
    one = train_generator(sim_cohort, config=tiny_config(), seed=3)
    assert two.config == one.config and two.meta["seed"] == 3

    def af_r(model):
        syn = model.sample(300, seed=1, corr_guidance="none")
        return float(np.corrcoef(sim_cohort.allele_frequencies(), syn.allele_frequencies())[0, 1])

    accuracy = [m.meta["metrics"]["vae_accuracy"] for m in (one, two)]
    assert abs(accuracy[0] - accuracy[1]) < 0.015, accuracy
    r = [af_r(m) for m in (one, two)]
    assert min(r) >= 0.99 and abs(r[0] - r[1]) < 0.004, r
