"""Case/control association tests, LD clumping and GWAS-guided SNP selection.

The phenotype-supervised generator (SNPgen) models only the SNPs that matter for a trait:
:func:`select_snps` runs a GWAS on the training cohort, clumps it by linkage disequilibrium and
keeps the top ``k`` index SNPs. It composes three building blocks, which live where their
kind of code lives (:mod:`genosynth.stats.association`, :mod:`genosynth.privacy.releases`):

* :func:`~genosynth.stats.association.logistic_gwas` - per-SNP logistic regression
  ``logit P(case) = C b + x_j beta_j`` fitted by iteratively reweighted least squares
  (Newton-Raphson), **vectorised over SNPs**: every Newton step is a handful of matrix products
  over a block of SNPs, and each SNP uses the samples with an observed genotype (complete-case,
  as plink2 ``--glm``). Additive (0/1/2 ALT copies) or dominant (ALT carrier 0/1) coding;
  optional covariates such as the top genotype principal components
  (:func:`~genosynth.stats.association.genotype_pcs`). Wald test of ``beta_j``.
* :func:`~genosynth.stats.association.ld_clump` - plink-style greedy clumping: take the best
  remaining SNP as an index SNP, drop every SNP within ``kb`` kilobases on the same chromosome
  whose squared genotype correlation with it exceeds ``r2``, repeat.
* :func:`~genosynth.privacy.releases.release_snp_selection` - differentially private selection:
  an exponential mechanism over an association score whose per-person sensitivity is bounded
  (derivation in :func:`~genosynth.stats.association.association_scores`), run ``k`` times by
  peeling (:func:`~genosynth.privacy.releases.dp_select`) and recorded in the run's accountant,
  so the guarantee holds for the phenotype *and* the genotypes of every person.

The GWAS table of a private cohort is itself a private statistic (summary statistics allow
membership inference, Homer et al. 2008), so with ``epsilon`` set :func:`select_snps` returns no
GWAS table and uses no private p-values, principal components or LD.

>>> from genosynth.cohort import Cohort, make_samples, make_variants
>>> rng = np.random.default_rng(0)
>>> g = rng.binomial(2, 0.3, size=(400, 6)).astype(np.int8)
>>> y = (rng.random(400) < 0.2 + 0.25 * g[:, 2]).astype(float)
>>> c = Cohort(g, make_variants(chrom=["1"] * 6, pos=np.arange(1, 7) * 1_000_000, ref=["A"] * 6, alt=["G"] * 6),
...            make_samples(range(400), phenotype=y), phased=False)
>>> sel = select_snps(c, k=1, seed=1)
>>> sel.ids, bool(sel.gwas["p"].iloc[2] < 1e-6)
(['1:3000000_A_G'], True)

References
----------
Purcell S. et al. (2007) PLINK: a tool set for whole-genome association and population-based
linkage analyses. American Journal of Human Genetics 81(3): 559-575. (logistic test, clumping)

Chang C. C. et al. (2015) Second-generation PLINK: rising to the challenge of larger and richer
datasets. GigaScience 4: 7. (plink2 ``--glm``, the reference implementation we validate against)

Price A. L. et al. (2006) Principal components analysis corrects for stratification in
genome-wide association studies. Nature Genetics 38(8): 904-909.

McCullagh P., Nelder J. A. (1989) Generalized Linear Models, 2nd ed., section 4.4 (IRLS).

Homer N. et al. (2008) Resolving individuals contributing trace amounts of DNA to highly complex
mixtures using high-density SNP genotyping microarrays. PLoS Genetics 4(8): e1000167.

McSherry F., Talwar K. (2007) Mechanism design via differential privacy. FOCS. (exponential mechanism)

Durfee D., Rogers R. (2019) Practical differentially private top-k selection with pay-what-you-get
composition. NeurIPS. (Gumbel noise = exponential mechanism; peeling)

Cesar M., Rogers R. (2021) Bounding, concentrating, and truncating: unifying privacy loss
composition for data analytics. ALT. (an eps-exponential mechanism is eps^2/8-zCDP)

Bun M., Steinke T. (2016) Concentrated differential privacy: simplifications, extensions, and
lower bounds. TCC. (rho-zCDP implies (rho + 2 sqrt(rho log(1/delta)), delta)-DP)

Johnson A., Shmatikov V. (2013) Privacy-preserving data exploration in genome-wide association
studies. KDD. (differentially private selection of GWAS SNPs)
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any
import numpy as np
import pandas as pd
from genosynth.cohort import Cohort
from genosynth.errors import InputError, PrivacyError
from genosynth.privacy.releases import release_snp_selection
from genosynth.seeds import noise_seed, resolve_seed
from genosynth.stats.association import MODELS, binary_phenotype, gwas, ld_clump, standardised


# ================================================================================ configuration
@dataclass
class SelectConfig:
    """Options of :func:`select_snps` (recorded with every selection)."""

    k: int = 1024  # number of SNPs to keep
    model: str = "additive"  # genotype coding of the test: "additive" (0/1/2) or "dominant" (0/1)
    pcs: int = 0  # top genotype principal components used as covariates (0: none; not with epsilon)
    clump_r2: float | None = 0.2  # LD clumping r^2 threshold; None disables clumping
    clump_kb: float = 250.0  # LD clumping window, kilobases either side of the index SNP
    p_threshold: float | None = None  # only SNPs with p <= this are candidates (not with epsilon)
    epsilon: float | None = None  # differential privacy budget of the selection; None: not private
    delta: float = 0.0  # DP delta; > 0 allows zCDP accounting of the k exponential mechanisms
    strata: str | None = None  # sample-table column (e.g. "super_pop") to stratify the DP score by
    phenotype: str = "phenotype"  # sample-table column holding the 0/1 trait
    seed: int | None = None  # None draws one; the seed used is recorded in the selection

    def validate(self) -> None:
        """Raise :class:`InputError` naming the fix for an impossible option."""
        if int(self.k) != self.k or self.k < 1:
            raise InputError(f"k must be a positive integer (e.g. --k 1024), got {self.k}")
        if self.model not in MODELS:
            raise InputError(f"model must be one of {', '.join(MODELS)} (e.g. --model additive), got {self.model!r}")
        if int(self.pcs) != self.pcs or self.pcs < 0:
            raise InputError(f"pcs must be a non-negative integer (e.g. --pcs 4), got {self.pcs}")
        if self.clump_r2 is not None and not 0.0 < self.clump_r2 <= 1.0:
            raise InputError(f"clump_r2 must lie in (0, 1] (e.g. --clump-r2 0.2), got {self.clump_r2}")
        if not self.clump_kb >= 0:
            raise InputError(f"clump_kb must be >= 0 (e.g. --clump-kb 250), got {self.clump_kb}")
        if self.p_threshold is not None and not 0.0 < self.p_threshold <= 1.0:
            raise InputError(f"p_threshold must lie in (0, 1] (e.g. 5e-8), got {self.p_threshold}")
        if self.epsilon is not None and not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise InputError(f"epsilon must be a positive number (e.g. --epsilon 1), got {self.epsilon}")
        if not 0.0 <= self.delta < 1.0:
            raise InputError(f"delta must lie in [0, 1) (e.g. --delta 1e-6), got {self.delta}")
        if self.epsilon is not None:
            if self.pcs:
                raise PrivacyError(
                    "principal components of a private cohort are private statistics and cannot be used "
                    "under --epsilon; drop --pcs, or stratify the DP score by ancestry labels with --strata super_pop"
                )
            if self.p_threshold is not None:
                raise PrivacyError(
                    "a p-value threshold on a private cohort is not differentially private; drop --p-threshold "
                    "under --epsilon (the exponential mechanism ranks the SNPs itself)"
                )
        elif self.strata is not None:
            raise InputError("--strata stratifies the DP score and needs --epsilon; without --epsilon use --pcs")


@dataclass
class SnpSelection:
    """Result of :func:`select_snps`.

    Attributes
    ----------
    indices : int64, shape (n_selected,)
        Selected variant indices into the input cohort, in the cohort's variant order.
    ids : list of str
        Their variant ids, same order.
    rank : int64, shape (n_selected,)
        1 = strongest association (GWAS p-value, or DP selection order), same order as ``indices``.
    gwas : DataFrame or None
        The association table of every variant (columns
        :data:`~genosynth.stats.association.GWAS_COLUMNS` + ``selected``, ``rank``); ``None`` under
        differential privacy, where it would be a private release.
    privacy : dict or None
        What the DP selection spent (see :func:`~genosynth.privacy.releases.dp_select`); ``None``
        when not private.
    config : dict
        The resolved :class:`SelectConfig`, seed included.
    notes : list of str
        Things the user should know (fewer than ``k`` SNPs, clumping skipped, ...).
    """

    indices: np.ndarray
    ids: list[str]
    rank: np.ndarray
    gwas: pd.DataFrame | None
    privacy: dict[str, Any] | None
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def epsilon(self) -> float:
        """Privacy budget spent by the selection (0.0 when it was not private)."""
        return float(self.privacy["epsilon"]) if self.privacy else 0.0


def population_phenotype(cohort: Cohort, case_pops, control_pops) -> Cohort:
    """A case/control cohort from population labels: cases from ``case_pops``, controls from ``control_pops``.

    Each label is looked up in the ``pop`` column, then in ``super_pop`` (so ``YRI`` and ``AFR``
    both work). Samples in neither group are dropped; the trait goes to the ``phenotype`` column
    (1 case, 0 control). This is the two-population GWAS set-up used to test generators on data
    without a trait.

    Raises :class:`InputError` naming the fix when a label matches nobody or the groups overlap.
    """
    pop, sup = cohort.labels("pop"), cohort.labels("super_pop")

    def members(labels, role):
        mask = np.zeros(cohort.n_samples, dtype=bool)
        for label in labels:
            hit = (pop == label) | (sup == label)
            if not hit.any():
                known = sorted(set(pop.tolist()) | set(sup.tolist()) - {""})
                raise InputError(f"{role} population {label!r} matches no sample; known labels: {known[:30]} "
                                 "(give --samples with pop/super_pop columns)")
            mask |= hit
        return mask

    case = members(list(case_pops), "case")
    control = members(list(control_pops), "control")
    if (case & control).any():
        raise InputError("case and control populations overlap; give disjoint --case-pop and --control-pop")
    keep = np.flatnonzero(case | control)
    out = cohort.subset(samples=keep)
    out.samples["phenotype"] = case[keep].astype(np.float64)
    return out


# ================================================================================ selection
def select_snps(cohort: Cohort, *, k: int = 1024, model: str = "additive", pcs: int = 0,
                clump_r2: float | None = 0.2, clump_kb: float = 250.0, p_threshold: float | None = None,
                epsilon: float | None = None, delta: float = 0.0, strata: str | None = None,
                ld_reference: Cohort | None = None, phenotype: str = "phenotype",
                seed: int | None = None, accountant=None, deterministic_noise: bool = False) -> SnpSelection:
    """GWAS-guided SNP selection: association test, LD clumping, top ``k`` index SNPs.

    Without ``epsilon``: logistic GWAS (:func:`~genosynth.stats.association.gwas`, optional ``pcs``
    principal-component covariates), candidates ordered by p-value (``p <= p_threshold`` when
    given), greedy LD clumping (:func:`~genosynth.stats.association.ld_clump`, with the cohort's
    own LD or ``ld_reference``), first ``k`` index SNPs.

    With ``epsilon``: the DP release
    :func:`~genosynth.privacy.releases.release_snp_selection` (``k`` exponential mechanisms on
    association scores of bounded sensitivity, optionally stratified by the ``strata`` column),
    which also composes the budget and records itself in ``accountant``. Clumping then needs a
    public ``ld_reference`` (private LD would leak); without one it is skipped and a note says so.
    No GWAS table is returned and no private p-value, PC or LD is touched. The returned
    ``privacy`` dict is what an accountant must charge.

    Parameters
    ----------
    cohort : Cohort
        Training cohort with a binary trait in ``phenotype``.
    k : int
        Number of SNPs to keep (fewer when fewer candidates remain).
    model : {"additive", "dominant"}
    pcs : int
    clump_r2 : float or None
        ``None`` disables clumping.
    clump_kb : float
    p_threshold : float, optional
    epsilon, delta : float
        DP budget of the selection (``None``: not private).
    strata : str, optional
        Sample-table column to stratify the DP score by (e.g. ``"super_pop"``).
    ld_reference : Cohort, optional
        Public cohort holding every variant id of ``cohort``, whose LD is used for clumping.
    phenotype : str
    seed : int, optional
        ``None`` draws one (:func:`genosynth.seeds.resolve_seed`); it is in ``config["seed"]``
        unless ``epsilon`` is given. Under ``epsilon`` the noise seed is drawn from the OS and kept
        secret (:func:`genosynth.seeds.noise_seed`; whoever knows it can redraw the mechanism's
        noise), whatever ``seed`` is, and no seed is returned or written.
    accountant : PrivacyAccountant, optional
        Under ``epsilon``, the run's accountant; the selection records its ``top_k`` event(s) there
        (``privacy["accountant"]`` holds them either way).
    deterministic_noise : bool
        Under ``epsilon``, draw the noise from ``seed`` (which must be given) instead of a secret
        seed, so two calls give the same selection. For tests only: such a selection has no
        privacy against anyone who knows ``seed``.

    Returns
    -------
    SnpSelection
    """
    cfg = SelectConfig(k=k, model=model, pcs=pcs, clump_r2=clump_r2, clump_kb=clump_kb,
                       p_threshold=p_threshold, epsilon=epsilon, delta=delta, strata=strata,
                       phenotype=phenotype, seed=resolve_seed(seed))
    cfg.validate()
    t0 = time.perf_counter()
    notes: list[str] = []
    y = binary_phenotype(cohort, phenotype)
    g = cohort.genotypes()
    ld_g = g if ld_reference is None else _aligned_genotypes(ld_reference, cohort)
    if epsilon is not None:
        chosen, privacy = _select_privately(cohort, g, y, cfg, ld_g=ld_g, public_ld=ld_reference is not None,
                                            seed=noise_seed(seed, deterministic=deterministic_noise),
                                            accountant=accountant, notes=notes)
        table = None
    else:
        chosen, table = _select_by_gwas(cohort, cfg, ld_g=ld_g, notes=notes)
        privacy = None
    return _selection_result(cohort, cfg, chosen, table=table, privacy=privacy, notes=notes,
                             ld_reference=ld_reference is not None, t0=t0)


def _clump_exclusion(cohort: Cohort, ld_g: np.ndarray, cfg: SelectConfig):
    """``exclude(j) -> indices``: SNPs within ``clump_kb`` of ``j`` with r² (LD of ``ld_g``) above ``clump_r2``."""
    chrom = cohort.variants["chrom"].astype(str).to_numpy()
    pos = cohort.variants["pos"].to_numpy(dtype=np.int64)
    zfull = standardised(ld_g)  # (N_ref, V)
    half = cfg.clump_kb * 1000

    def exclude(j):
        win = np.flatnonzero((chrom == chrom[j]) & (np.abs(pos - pos[j]) <= half))
        r = (zfull[:, j] @ zfull[:, win]) / zfull.shape[0]
        return win[r * r > cfg.clump_r2]
    return exclude


def _select_privately(cohort: Cohort, g: np.ndarray, y: np.ndarray, cfg: SelectConfig, *, ld_g: np.ndarray,
                      public_ld: bool, seed: int, accountant, notes: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Stage 2 under ``epsilon``: the DP release of the selection, clumped by public LD only."""
    labels = cohort.labels(cfg.strata) if cfg.strata else None
    exclude = None
    if cfg.clump_r2 is not None:
        if not public_ld:
            notes.append("LD clumping skipped: LD of the private cohort is a private statistic; give a public "
                         "LD reference (--ld-bfile/ld_reference) to clump under --epsilon")
        else:
            exclude = _clump_exclusion(cohort, ld_g, cfg)
    return release_snp_selection(g, y, cfg.k, model=cfg.model, epsilon=cfg.epsilon, delta=cfg.delta, seed=seed,
                                 strata=labels, strata_name=cfg.strata, exclude=exclude, accountant=accountant)


def _select_by_gwas(cohort: Cohort, cfg: SelectConfig, *, ld_g: np.ndarray,
                    notes: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Stage 2 without ``epsilon``: logistic GWAS, candidates by p-value, LD clumping, first ``k``."""
    table = gwas(cohort, phenotype=cfg.phenotype, model=cfg.model, pcs=cfg.pcs, seed=cfg.seed)
    p = table["p"].to_numpy()
    ok = np.isfinite(p)
    if cfg.p_threshold is not None:
        ok &= p <= cfg.p_threshold
    cand = np.flatnonzero(ok)
    cand = cand[np.lexsort((cand, -table["neg_log10_p"].to_numpy()[cand]))]  # smallest p first, ties by index
    n_failed = int((~np.isfinite(p)).sum())
    if n_failed:
        notes.append(f"{n_failed} variants have no test (monomorphic, separated or not converged)")
    if cfg.clump_r2 is not None:
        chosen = ld_clump(ld_g, cohort.variants, cand, r2=cfg.clump_r2, kb=cfg.clump_kb, max_index=cfg.k)
    else:
        chosen = cand[:cfg.k]
    return chosen, table


def _selection_result(cohort: Cohort, cfg: SelectConfig, chosen: np.ndarray, *, table: pd.DataFrame | None,
                      privacy: dict[str, Any] | None, notes: list[str], ld_reference: bool,
                      t0: float) -> SnpSelection:
    """Stage 3: ranks, the table's ``selected``/``rank`` columns and the recorded config (no seed under DP)."""
    if len(chosen) < cfg.k:
        notes.append(f"only {len(chosen)} SNPs selected (asked for {cfg.k}): fewer candidates remain after "
                     "filtering/clumping; lower --k, relax --clump-r2 or --p-threshold")
    rank_of = np.zeros(cohort.n_variants, dtype=np.int64)  # (V,)
    rank_of[chosen] = np.arange(1, len(chosen) + 1)
    indices = np.sort(chosen)
    if table is not None:
        table["selected"] = rank_of > 0
        table["rank"] = rank_of
    config = dataclasses.asdict(cfg)
    if cfg.epsilon is not None:
        config["seed"] = None  # secret under DP
    config["ld_reference"] = ld_reference
    config["seconds"] = round(time.perf_counter() - t0, 3)
    return SnpSelection(
        indices=indices,
        ids=[str(i) for i in cohort.variants["id"].to_numpy()[indices]],
        rank=rank_of[indices],
        gwas=table,
        privacy=privacy,
        config=config,
        notes=notes,
    )


def _aligned_genotypes(reference: Cohort, cohort: Cohort) -> np.ndarray:
    """Genotypes of ``reference`` in the variant order of ``cohort`` (matched by id)."""
    pos = pd.Index(reference.variants["id"].astype(str)).get_indexer(cohort.variants["id"].astype(str))
    if (pos < 0).any():
        missing = cohort.variants["id"].to_numpy()[pos < 0]
        raise InputError(
            f"the LD reference lacks {int((pos < 0).sum())} variants of the cohort (first: {list(missing[:3])}); "
            "give a reference genotyped at the same variant ids"
        )
    return reference.genotypes()[:, pos]
