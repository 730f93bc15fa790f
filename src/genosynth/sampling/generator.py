"""A trained generator ready to sample: :class:`Generator` draws latents with DPM-Solver++ or DDIM, decodes them to
allele probabilities and **draws** alleles from them (argmax only on request); in haplotype mode
two haplotypes of the same label make one person.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
import numpy as np
import pandas as pd
import torch
from genosynth.cohort import Cohort, make_samples
from genosynth.models.diffusion import GaussianDiffusion
from genosynth.models.ema import EMA
from genosynth.errors import InputError
from genosynth.models.dit import DiT1D, DiTConfig
from genosynth.models.ld_prior import CorrelationPrior, CorrGuideConfig
from genosynth.models.solvers import sample_latents
from genosynth.sampling.ld_guidance import auto_method, guided_decode
from genosynth.models.vae import GenotypeVAE, sample_alleles
from genosynth.sampling.ancestry import person_logit_shift
from genosynth.sampling.factors import request_signature, stored_cache
from genosynth.models.config import GeneratorConfig
from genosynth.models.checkpoint import load_checkpoint
from genosynth.sampling.counts import largest_remainder, plan_counts
from genosynth.runtime import resolve_device
from genosynth.models.checkpoint import variants_from_dict


def pair_order(z: torch.Tensor, labels: torch.Tensor, *, n_pcs: int = 8) -> torch.Tensor:
    """Reorder latents within each label so that rows 2i, 2i+1 are close in the label's top PCs.

    Real people carry two haplotypes of one ancestry (the same sub-population, or the same
    admixture proportions); pairing generated haplotypes at random would mix them. Pairs are
    matched greedily, closest first, on the top ``n_pcs`` principal components of the batch's
    generated latents of that label (only generated data enters).

    z : float, shape (B, C, T); labels : int64, shape (B,) -> int64 permutation, shape (B,)
    """
    flat = z.flatten(1).float().cpu()  # (B, C*T)
    order = torch.arange(len(labels))
    for j in torch.unique(labels):
        idx = torch.nonzero(labels == j).squeeze(1)  # (n_j,)
        n = len(idx)
        if n < 4:
            continue
        x = flat[idx] - flat[idx].mean(dim=0)
        vh = torch.linalg.svd(x, full_matrices=False).Vh[: min(n_pcs, n - 1)]  # (k, C*T)
        scores = x @ vh.T  # (n_j, k)
        d = torch.cdist(scores, scores)  # (n_j, n_j)
        iu = torch.triu_indices(n, n, offset=1)
        by_distance = torch.argsort(d[iu[0], iu[1]], stable=True)
        free = np.ones(n, dtype=bool)
        pairs: list[int] = []
        for a, b in zip(iu[0][by_distance].tolist(), iu[1][by_distance].tolist()):
            if free[a] and free[b]:
                free[a] = free[b] = False
                pairs += [a, b]
                if len(pairs) >= n - 1:
                    break
        pairs += np.flatnonzero(free).tolist()  # an odd one out keeps its place at the end
        order[idx] = idx[torch.tensor(pairs)]
    return order


@contextlib.contextmanager
def _frozen(module: torch.nn.Module):
    """Parameters of ``module`` without ``requires_grad`` inside the block (restored after): a
    backward pass then skips the weight gradients (a third of its matrix products) and leaves no
    ``.grad`` on the model."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p in params:
            p.requires_grad_(True)


def _autocast_bf16(net):
    """``net`` (a DiT, or a guided partial of one) run under bfloat16 autocast and returned in float32
    (``sampling.precision="bf16"``): the sampler's arithmetic stays float32."""

    def run(x, t, **cond):
        device = x.device.type
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            return net(x, t, **cond).float()  # (B, C, L)
    return run


def block_seed(seed: int, block: int) -> int:
    """The seed of sampling block ``block`` of a run with ``seed`` (independent streams per block).

    >>> block_seed(0, 0) != block_seed(0, 1) != block_seed(1, 0)
    True
    """
    return int(np.random.SeedSequence([int(seed), int(block)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _rebatch(blocks: Iterator[np.ndarray], batch_size: int, *, per_person: int) -> Iterator[tuple[int, np.ndarray]]:
    """Regroup blocks of rows into ``(first person, rows)`` batches of ``batch_size`` people."""
    pending: list[np.ndarray] = []
    have, start = 0, 0
    want = batch_size * per_person
    for rows in blocks:  # (b*P, V)
        pending.append(rows)
        have += rows.shape[0]
        while have >= want:
            allrows = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield start, allrows[:want]
            pending, have, start = [allrows[want:]], have - want, start + batch_size
    if have:
        yield start, np.concatenate(pending)


class Generator:
    """A trained generator: VAE decoder + EMA DiT + diffusion, ready to sample.

    Build it with :func:`genosynth.training.plain.train_generator` or :meth:`Generator.load`.
    """

    def __init__(self, *, config: GeneratorConfig, vae: GenotypeVAE, dit: DiT1D, meta: dict):
        self.config = config
        self.vae = vae.eval()
        self.dit = dit.eval()
        self.diffusion = GaussianDiffusion(config.diffusion)
        self.meta = meta
        self.vocabulary: list[str] = list(meta["labels"])
        self.label_mix: dict[str, float] = dict(meta["label_mix"])
        self.variants = variants_from_dict(meta["variants"])
        self.phased: bool = bool(meta["phased"])
        self.latent_scale: float = float(meta["latent_scale"])
        if meta.get("decoder_temperature") is not None:  # fitted by training (training.fit_temperature)
            self.config.sampling.temperature = float(meta["decoder_temperature"])
        cal = meta.get("calibration")
        self.calibration: torch.Tensor | None = None if cal is None else cal.float()  # (n_labels or 2 n_labels, V, K)
        self.phenotype_column: str | None = meta.get("phenotype_column")
        self.case_fraction: dict[str, float] | None = meta.get("case_fraction")  # per label, aggregate
        self.calibration_by_phenotype: bool = bool(meta.get("calibration_by_phenotype", False))
        cp = meta.get("correlation_prior")
        self.corr_prior = None if cp is None else CorrelationPrior.from_state_dict(cp)
        # DP models: released by genosynth.privacy.releases.release_ancestry_spread, drawn by
        # genosynth.sampling.ancestry
        self.ancestry_spread: dict | None = meta.get("ancestry_spread")
        # populations inside the labels (genosynth.training.calibration.fine_label_corrections): each
        # person drawn as fine label l is decoded with correction[l] added; None = the model has none
        self.fine_labels: dict | None = meta.get("fine_labels")
        self._corr_cache: dict = {}  # (method, steps, guidance, temperature, eta) -> per-label copula factors
        # the default request's copula factors, solved after training (sampling.factors); None = per request
        self.stored_factors: dict | None = meta.get("copula_factors")
        # people drawn together (latent guidance and pairing see one block; each block has its own
        # random stream), so a seed gives the same rows for any batch size
        self.block_size: int = int(config.sampling.batch_size)
        self.decode_rows: int = 128  # rows per decoder call: a block's temporaries stay in the CPU cache
        self.corr_options: dict = {}  # CorrGuideConfig fields to override at sampling, e.g. {"latent_steps": 12}
        self.report: Callable[[str], None] | None = None  # receives a line per slow stage inside a block (progress bars)
        self.device = torch.device("cpu")
        self.path: str | None = None  # the checkpoint file, when loaded from one (its digest goes in file headers)

    @classmethod
    def from_payload(cls, ck: dict) -> "Generator":
        config = GeneratorConfig.from_dict(ck["config"])
        n_labels = len(ck["labels"])
        vae = GenotypeVAE(len(ck["variants"]["id"]), ck["n_classes"], n_labels, config.vae)
        vae.load_state_dict(ck["state"]["vae"])
        dit = DiT1D(DiTConfig(**ck["dit_config"]))
        ema = EMA(dit, decay=config.training.ema_decay)
        ema.load_state_dict(ck["state"]["ema"])
        ema.copy_to(dit)
        meta = {k: v for k, v in ck.items() if k != "state"}
        meta["stage"] = ck["state"]["stage"]
        return cls(config=config, vae=vae, dit=dit, meta=meta)

    @classmethod
    def load(cls, path: str, *, device: str | torch.device = "cpu") -> "Generator":
        """Load a checkpoint written by :func:`~genosynth.training.plain.train_generator` (must have
        finished training)."""
        ck = load_checkpoint(path)
        if ck["state"]["stage"] != "done":
            raise InputError(
                f"{path} is a checkpoint of an unfinished run (stage {ck['state']['stage']}, epoch "
                f"{ck['state']['epoch']}); finish it with `genosynth train ... --resume` first"
            )
        model = cls.from_payload(ck).to(device)
        model.path = path
        return model

    def to(self, device: str | torch.device) -> "Generator":
        self.device = resolve_device(device)
        self.vae.to(self.device)
        self.dit.to(self.device)
        if self.calibration is not None:
            self.calibration = self.calibration.to(self.device)
        return self

    @property
    def privacy(self) -> dict | None:
        return self.meta.get("privacy")

    # ------------------------------------------------------------------ core draw
    @property
    def conditions_on_phenotype(self) -> bool:
        """Whether the DiT was trained with a case/control condition."""
        return self.dit.pheno_embedder is not None

    @torch.no_grad()
    def sample_rows(self, labels: torch.Tensor, *, rng: torch.Generator, steps: int | None = None,
                    guidance: float | None = None, argmax: bool | None = None,
                    temperature: float | None = None, eta: float | None = None,
                    corr_guidance: str | None = None, pheno: torch.Tensor | None = None,
                    pheno_guidance: float | None = None, cache: dict | None = None,
                    fine: torch.Tensor | None = None, use_stored: bool = True) -> torch.Tensor:
        """Draw allele rows (haplotypes or genotypes) for label indices (and phenotypes).

        fine : int64, shape (B,), optional - fine-label index per row (models with
            :attr:`fine_labels`); its frequency correction is added to the decoder logits.

        cache : dict, optional - per-label copula factors reused across the calls of one run
            (:meth:`iter_batches` passes a fresh one per run); None = the model's own cache.
        use_stored : bool - start the copula from the factors stored in the checkpoint when this
            request has the options they were solved for (:mod:`genosynth.sampling.factors`).

        pheno : int64, shape (B,), optional - 1 case, 0 control (phenotype models only); None
            samples the phenotype-unconditional (null) condition.
        pheno_guidance : float, optional - with ``pheno``: guide the phenotype (given the ancestry)
            with its own scale and the ancestry with ``guidance`` (see ``DiT1D.forward_with_cfg``);
            None = ``config.sampling.pheno_guidance``, and if that is None one joint scale.

        labels : int64, shape (B,) -> int8, shape (B, V) on the CPU. ``corr_guidance`` (default
        ``config.sampling.corr_guidance``) picks the decoding of :func:`genosynth.sampling.ld_guidance.guided_decode`;
        ``"none"`` (or a checkpoint without a correlation prior, or ``argmax``) is plain decoding.
        """
        if pheno is not None and not self.conditions_on_phenotype:
            raise InputError("this model was trained without a phenotype; retrain with "
                             "`genosynth train ... --phenotype-column phenotype` to generate cases and controls")
        sc = self.config.sampling
        steps = sc.steps if steps is None else steps
        guidance = sc.guidance if guidance is None else guidance
        pheno_guidance = sc.pheno_guidance if pheno_guidance is None else pheno_guidance
        argmax = sc.argmax if argmax is None else argmax
        temperature = sc.temperature if temperature is None else temperature
        eta = sc.eta if eta is None else eta
        y = labels.to(self.device)
        cond = {"y": y}
        if pheno is not None:
            cond["pheno"] = pheno.to(self.device)  # (B,)
        z = self._draw_latents(labels, cond, rng=rng, steps=steps, eta=eta, guidance=guidance,
                               pheno_guidance=pheno_guidance)  # (B, C, T)
        decode = self._row_decoder(labels, cond.get("pheno"), rng=rng, fine=fine)  # (z, y) -> logits (B, K, V)
        method = self.decoding(corr_guidance)  # "none" when the model has no prior
        if method != "none" and not argmax:
            prior = self.corr_prior
            cfg = self._corr_config(method)
            key = (method, steps, guidance, pheno_guidance, temperature, eta, tuple(sorted(self.corr_options.items())))
            cache = (self._corr_cache if cache is None else cache).setdefault(key, {})
            if use_stored and not cache:
                cache.update(stored_cache(self.stored_factors, request_signature(
                    self, method=method, steps=steps, guidance=guidance, pheno_guidance=pheno_guidance,
                    temperature=temperature, eta=eta, fine=fine is not None, pheno=pheno is not None)))
            with _frozen(self.vae):  # guidance needs gradients of the latents only, not of the weights
                return guided_decode(decode, z / self.latent_scale, y, prior, rng=rng,
                                     config=cfg, chrom=self.variants["chrom"].to_numpy(),
                                     pos=self.variants["pos"].to_numpy(), temperature=temperature, cache=cache,
                                     report=self.report)
        logits = decode(z / self.latent_scale, y)  # (B, K, V)
        u_logits = logits.cpu()
        return sample_alleles(u_logits, rng=rng, argmax=argmax, temperature=temperature)

    def _corr_config(self, method: str) -> CorrGuideConfig:
        """Copula band: what training chose (a DP prior: its whole band); latent guidance: the whole band,
        ``sampling.latent_steps`` Adam steps at ``sampling.latent_lr``; ``corr_options`` override any field."""
        prior, sc = self.corr_prior, self.config.sampling
        return CorrGuideConfig(**{"window": int(prior.info.get("copula_window", prior.window)),
                                  "latent_window": prior.window, "latent_steps": sc.latent_steps,
                                  "latent_lr": sc.latent_lr, **self.corr_options, "method": method})

    def decoding(self, corr_guidance: str | None = None) -> str:
        """The decoding a draw uses: ``corr_guidance`` or the model's ``sampling.corr_guidance``, with
        ``"auto"`` resolved for this model's prior (:func:`~genosynth.sampling.ld_guidance.auto_method`);
        ``"none"`` without a prior."""
        method = self.config.sampling.corr_guidance if corr_guidance is None else corr_guidance
        if self.corr_prior is None:
            return "none"
        if method == "auto":
            method = auto_method(self.corr_prior, self._corr_config("copula"),
                                 chrom=self.variants["chrom"].to_numpy(), pos=self.variants["pos"].to_numpy())
        return method

    def _draw_latents(self, labels: torch.Tensor, cond: dict, *, rng: torch.Generator, steps: int,
                      eta: float, guidance: float, pheno_guidance: float | None) -> torch.Tensor:
        """Latents of the rows by ``sampling.sampler`` (DDIM or DPM-Solver++; x_T drawn from ``rng``),
        paired within label when phased.

        labels : int64, shape (B,); cond : ``{"y": (B,), "pheno": (B,)}`` on the device -> (B, C, T)
        """
        shape = (labels.shape[0], self.vae.config.latent_channels, self.vae.n_tokens)
        noise = torch.randn(shape, generator=rng).to(self.device)  # (B, C, T); eta > 0 steps draw from rng too
        pheno = cond.get("pheno")
        net, net_guidance = self.dit, guidance
        bf16 = self.config.sampling.precision == "bf16"
        separate = pheno is not None and pheno_guidance is not None
        if separate or (bf16 and guidance != 1.0):
            # the guided DiT as a plain network (guidance applied inside), run by the sampler with scale 1
            net = functools.partial(self.dit.forward_with_cfg, scale=guidance,
                                    pheno_scale=pheno_guidance if separate else None)
            net_guidance = 1.0
        if bf16:
            net = _autocast_bf16(net)
        sampler = self.config.sampling.sampler
        if self.report is not None:
            self.report(f"diffusion: {steps} {sampler} steps x {labels.shape[0]} rows")
        z = sample_latents(self.diffusion, net, shape, sampler=sampler, cond=cond, steps=steps, eta=eta,
                           guidance=net_guidance, noise=noise, rng=rng, device=self.device)  # (B, C, T)
        if self.phased and self.config.sampling.pairing == "matched":
            # pair within label (and phenotype)
            groups = labels if pheno is None else labels * 2 + pheno.to(labels.device)
            z = z[pair_order(z, groups).to(self.device)]  # rows 2i, 2i+1 become similar haplotypes
        return z

    def _row_decoder(self, labels: torch.Tensor, pheno: torch.Tensor | None, *, rng: torch.Generator,
                     fine: torch.Tensor | None = None):
        """``decode(z, y) -> logits (B, K, V)``: calibrated decoder, plus each row's fine-label correction
        (``fine``, int64 (B,)), plus each person's own ancestry shift (drawn from ``rng``) when the model
        carries an ancestry spread (a DP release, or a thin-population plain model's), its covariance
        times ``sampling.ancestry_spread_scale``."""
        decode = functools.partial(self._logits, pheno=pheno)  # (z, y) -> logits
        if fine is not None and self.fine_labels is not None:
            extra = self.fine_labels["correction"].float()[fine].permute(0, 2, 1).to(self.device)  # (B, K, V)
            plain = decode
            decode = lambda z_, y_: plain(z_, y_) + extra  # noqa: E731 (B, K, V)
        if self.ancestry_spread is None or not self.config.sampling.ancestry_spread:
            return decode
        b = labels.shape[0]
        per = 2 if self.phased and b % 2 == 0 else 1  # rows 2i, 2i+1 are one person (iter_batches)
        spread = self.ancestry_spread
        if self.config.sampling.ancestry_spread_scale != 1.0:
            spread = {**spread, "cov": np.asarray(spread["cov"]) * self.config.sampling.ancestry_spread_scale}
        shift = person_logit_shift(spread, labels.cpu(), rows_per_person=per,
                                   n_classes=int(self.meta["n_classes"]), rng=rng).to(self.device)
        return lambda z_, y_: decode(z_, y_) + shift  # (B, K, V): each person's own ancestry

    def _logits(self, z: torch.Tensor, y: torch.Tensor, pheno: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder logits of unscaled latents with the allele-frequency calibration: (B, C, T) -> (B, K, V).

        A model calibrated per (label, phenotype) group uses group ``2 y + pheno``; without
        ``pheno`` it uses the case-fraction-weighted mean of the label's two corrections.
        """
        rows = self.decode_rows
        logits = torch.cat([self.vae.decode(z[s:s + rows], None if y is None else y[s:s + rows])  # (rows, K, V) each
                            for s in range(0, max(z.shape[0], 1), rows)])  # (B, K, V)
        if self.calibration is not None:
            cal = self.calibration.to(logits.device)
            if not self.calibration_by_phenotype:
                correction = cal[y]  # (B, V, K)
            elif pheno is not None:
                correction = cal[y * 2 + pheno]  # (B, V, K)
            else:
                cf = torch.tensor([self.case_fraction[v] for v in self.vocabulary], device=logits.device)[y]  # (B,)
                correction = (1 - cf)[:, None, None] * cal[y * 2] + cf[:, None, None] * cal[y * 2 + 1]  # (B, V, K)
            logits = logits + correction.permute(0, 2, 1)  # (B, K, V)
        return logits

    def iter_batches(self, counts: dict[str, int], *, seed: int, steps: int | None = None,
                     guidance: float | None = None, argmax: bool | None = None,
                     batch_size: int | None = None, temperature: float | None = None,
                     eta: float | None = None, id_prefix: str = "syn",
                     corr_guidance: str | None = None, cases: dict[str, int] | None = None,
                     pheno_guidance: float | None = None) -> Iterator[Cohort]:
        """Yield the synthetic cohort in batches of people (memory stays flat).

        People are in a seeded random label order; sample ids are ``{id_prefix}{k:07d}``.
        ``cases`` (phenotype models): how many of each label's people are cases, the rest
        controls; the phenotype goes to the ``phenotype`` column (1 case, 0 control).

        People are drawn in blocks of ``self.block_size`` (the model's ``sampling.batch_size``),
        each from its own random stream (:func:`block_seed`), and regrouped into batches of
        ``batch_size``: the same ``seed`` gives byte-identical rows for any ``batch_size``.
        """
        batch_size = batch_size or self.config.sampling.batch_size
        gen = torch.Generator().manual_seed(int(seed))
        index = {v: i for i, v in enumerate(self.vocabulary)}
        people = np.concatenate([np.full(c, index[v], dtype=np.int64) for v, c in counts.items() if c > 0]
                                or [np.zeros(0, dtype=np.int64)])
        phenos = None
        if cases is not None:
            phenos = np.concatenate([np.repeat(np.array([1, 0], dtype=np.int64), [cases.get(v, 0), c - cases.get(v, 0)])
                                     for v, c in counts.items() if c > 0] or [np.zeros(0, dtype=np.int64)])
        perm = torch.randperm(len(people), generator=gen).numpy()
        people = people[perm]
        phenos = None if phenos is None else phenos[perm]
        fine = self._fine_people(people, gen)  # (N,) fine-label index per person, or None
        column = self.config.label_column
        options = dict(steps=steps, guidance=guidance, argmax=argmax, temperature=temperature, eta=eta,
                       corr_guidance=corr_guidance, pheno_guidance=pheno_guidance)
        # copula factors are solved from the run's first blocks; kept per request, so repeating a
        # request (another format, same seed) reuses them and no run depends on an earlier one
        # (the decoded marginals differ with populations, ancestry spread on or off, the latent sampler and
        # the latent-guidance steps: part of the key)
        sc = self.config.sampling
        cache = self._corr_cache.setdefault(("run", int(seed), tuple(counts.items()),
                                             None if cases is None else tuple(cases.items()), fine is not None,
                                             sc.ancestry_spread, sc.ancestry_spread_scale, sc.sampler,
                                             sc.latent_steps, sc.latent_lr, sc.precision), {})
        blocks = self._iter_blocks(people, phenos, seed=int(seed), options=options, cache=cache, first=gen,
                                   fine=fine)
        for start, rows in _rebatch(blocks, batch_size, per_person=2 if self.phased else 1):
            lab = torch.from_numpy(people[start:start + batch_size])  # (b,)
            ph = None if phenos is None else torch.from_numpy(phenos[start:start + batch_size])  # (b,)
            names = np.array(self.vocabulary, dtype=object)[lab.numpy()]
            ids = [f"{id_prefix}{k:07d}" for k in range(start + 1, start + len(lab) + 1)]
            extra = {} if column in ("pop", "super_pop") else {column: list(names)}
            trait = None if ph is None else ph.numpy().astype(np.float64)  # (b,) 1 case, 0 control
            if trait is not None and self.phenotype_column not in (None, "phenotype", column):
                extra[self.phenotype_column] = trait.tolist()
            parents = self.meta.get("label_parents") or {}
            coarse = {c: [parents[c][v] for v in names] for c in ("pop", "super_pop") if c in parents}
            if fine is not None:  # the person's population (fine label) goes to its own column
                fine_names = list(np.asarray(self.fine_labels["labels"], dtype=object)[fine[start:start + batch_size]])
                if self.fine_labels["column"] in ("pop", "super_pop"):
                    coarse[self.fine_labels["column"]] = fine_names
                else:
                    extra[self.fine_labels["column"]] = fine_names
            samples = make_samples(ids, pop=names if column == "pop" else coarse.get("pop"),
                                   super_pop=names if column == "super_pop" else coarse.get("super_pop"),
                                   phenotype=trait, **extra)
            meta = {"synthetic": True, "seed": int(seed), "label_column": column}
            if phenos is not None:
                meta["phenotype_column"] = self.phenotype_column
            if self.privacy:
                meta["privacy"] = self.privacy
            yield Cohort(alleles=rows, variants=self.variants, samples=samples,
                         phased=self.phased, ploidy=2, meta=meta)

    def _fine_people(self, people: np.ndarray, rng: torch.Generator) -> np.ndarray | None:
        """Each person's fine label (population) inside its label, split by the training mix (largest
        remainders) and placed in a random order drawn from ``rng``; None when the model has no fine
        labels or ``sampling.fine_labels`` is off.

        people : int64, shape (N,) label index per person -> int64, shape (N,) fine-label index
        """
        if self.fine_labels is None or not self.config.sampling.fine_labels:
            return None
        names, parent, mix = self.fine_labels["labels"], np.asarray(self.fine_labels["parent"]), self.fine_labels["mix"]
        out = np.zeros(len(people), dtype=np.int64)
        for j in np.unique(people):
            idx = np.flatnonzero(people == j)
            counts = largest_remainder({int(m): mix[names[m]] for m in np.flatnonzero(parent == j)}, len(idx))
            order = torch.randperm(len(idx), generator=rng).numpy()
            out[idx[order]] = np.repeat(np.array(list(counts), dtype=np.int64), list(counts.values()))
        return out

    def _iter_blocks(self, people: np.ndarray, phenos: np.ndarray | None, *, seed: int,
                     options: dict, cache: dict, first: torch.Generator,
                     fine: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Rows of ``block_size`` people at a time, block ``k`` drawn from its own generator
        (:func:`block_seed`), so that the rows do not depend on how callers batch them.

        Block 0 continues ``first`` (the generator that drew the label order), as every batch did
        before blocks existed: a run of up to ``block_size`` people draws what it always drew.

        people, phenos, fine : int64, shape (N,) label (phenotype, fine label) per person
            -> int8, shape (b*P, V) per block
        """
        per_person = 2 if self.phased else 1
        block = max(1, int(self.block_size))
        for k, start in enumerate(range(0, len(people), block)):
            rng = first if k == 0 else torch.Generator().manual_seed(block_seed(seed, k))
            lab = torch.from_numpy(people[start:start + block])  # (b,)
            ph = None if phenos is None else torch.from_numpy(phenos[start:start + block])  # (b,)
            fi = None if fine is None else torch.from_numpy(fine[start:start + block])  # (b,)
            rows = self.sample_rows(lab.repeat_interleave(per_person), rng=rng, cache=cache,
                                    pheno=None if ph is None else ph.repeat_interleave(per_person),
                                    fine=None if fi is None else fi.repeat_interleave(per_person),
                                    **options)  # (b*P, V)
            yield rows.numpy()

    def sample(self, n: int | None = None, *, labels: str | dict | None = None, seed: int = 0,
               steps: int | None = None, guidance: float | None = None, argmax: bool | None = None,
               batch_size: int | None = None, temperature: float | None = None,
               eta: float | None = None, corr_guidance: str | None = None,
               cases: int | None = None, controls: int | None = None,
               pheno_guidance: float | None = None) -> Cohort:
        """A synthetic cohort of ``n`` people (``labels`` counts, or the training mix) in memory.

        ``cases``/``controls`` (phenotype models) ask for that many cases and controls instead of
        ``n``; see :func:`plan_counts` for how they are spread over the labels.

        Returns
        -------
        Cohort : phased when the model is a haplotype model, else genotype counts.
        """
        counts, per_case = plan_counts(labels, n=n, cases=cases, controls=controls, vocabulary=self.vocabulary,
                                       mix=self.label_mix, case_fraction=self.case_fraction)
        parts = list(self.iter_batches(counts, seed=seed, steps=steps, guidance=guidance, argmax=argmax,
                                       batch_size=batch_size, temperature=temperature, eta=eta,
                                       corr_guidance=corr_guidance, cases=per_case,
                                       pheno_guidance=pheno_guidance))
        if not parts:
            raise InputError("nothing to generate: all label counts are 0")
        return Cohort(alleles=np.concatenate([p.alleles for p in parts]), variants=self.variants,
                      samples=pd.concat([p.samples for p in parts], ignore_index=True),
                      phased=self.phased, ploidy=2, meta=parts[0].meta)
