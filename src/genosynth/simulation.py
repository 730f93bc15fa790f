"""Simulated cohorts: a three-population out-of-Africa coalescent model and a liability-threshold trait.

:func:`simulate_cohort` draws a phased cohort of YRI / CEU / CHB people with msprime under the
Gutenkunst et al. (2009) demography, keeps biallelic SNPs above a minor-allele-frequency cut-off
and gives them realistic REF/ALT letters. :func:`simulate_phenotype` puts a binary trait with
known causal SNPs on any cohort (simulated or real) under the liability-threshold model.

Simulated data are not private, so allele frequencies here are computed on the cohort itself.

>>> cohort = simulate_cohort(n_samples=30, sequence_length=100_000, seed=1)
>>> cohort.phased, cohort.n_samples, sorted(set(cohort.labels("pop")))
(True, 30, ['CEU', 'CHB', 'YRI'])

References
----------
Gutenkunst R. N., Hernandez R. D., Williamson S. H., Bustamante C. D. (2009) Inferring the joint
demographic history of multiple populations from multidimensional SNP frequency data.
PLoS Genetics 5(10): e1000695. (Parameters as tabulated by stdpopsim, model ``OutOfAfrica_3G09``.)

Kelleher J., Etheridge A. M., McVean G. (2016) Efficient coalescent simulation and genealogical
analysis for large sample sizes. PLoS Computational Biology 12(5): e1004842. (msprime)

Falconer D. S. (1965) The inheritance of liability to certain diseases, estimated from the
incidence among relatives. Annals of Human Genetics 29(1): 51-76. (liability-threshold model)
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from genosynth.cohort import Cohort, make_samples, make_variants
from genosynth.errors import InputError
from genosynth.runtime import progress_bar
from genosynth.seeds import resolve_seed

# Super-population of each population of the model (1000 Genomes naming).
SUPER_POPULATION = {"YRI": "AFR", "CEU": "EUR", "CHB": "EAS"}
# Super-population of population names in stdpopsim's HomSap models; any other name is its own super_pop.
STDPOPSIM_SUPER_POPULATION = {**SUPER_POPULATION, "AFR": "AFR", "EUR": "EUR", "ASIA": "EAS", "ADMIX": "AMR",
                              "JPT": "EAS", "Han": "EAS", "Mbuti": "AFR", "Sardinian": "EUR",
                              "African_Americans": "AFR"}
BUILTIN_MODEL = "builtin"  # the hand-written out_of_africa_demography() (the default; --recent-expansion applies)
REGIONS_MODEL = "regions"  # regions_demography(): 24 populations in 4 regions (thin-data panels, issue 21)
MODEL_NAME = "OutOfAfrica_3G09"
MODEL_CITATION = (
    "Gutenkunst et al. (2009) PLoS Genet 5(10):e1000695; parameters as in stdpopsim OutOfAfrica_3G09"
)
EXPANSION_MODEL_NAME = "OutOfAfrica_3G09+expansion_2T12"
EXPANSION_CITATION = (
    "recent expansion: growth rates and onset of Tennessen et al. (2012) Science 337:64-69 "
    "(stdpopsim OutOfAfrica_2T12), European rate also for CHB"
)
_BASES = np.array(["A", "C", "G", "T"], dtype=object)
_TRANSITION = {"A": "G", "G": "A", "C": "T", "T": "C"}
_TRANSVERSIONS = {"A": ("C", "T"), "G": ("C", "T"), "C": ("A", "G"), "T": ("A", "G")}


# ================================================================================ configuration
@dataclass(frozen=True)
class RegionsParameters:
    """A hierarchical island model: ``regions`` regions of ``per_region`` populations each.

    One ancestral population splits into the regions ``T_region`` generations ago; each region
    splits into its populations ``T_pop`` generations ago; every population keeps size ``N``, with
    migration ``m_within`` between populations of one region. Expected F_ST is about
    ``T / (2 N)`` without migration: with the defaults about 0.1 between regions and 0.015 within
    one, the shape of continental vs within-continent differentiation in 1000 Genomes/HGDP.
    """

    regions: int = 4
    per_region: int = 6
    N: float = 10_000  # diploid size of every population (ancestral ones too)
    T_region: float = 2_000  # generations since the regions split
    T_pop: float = 300  # generations since the populations of a region split
    m_within: float = 1e-5  # symmetric migration rate between populations of one region, per generation

    def names(self) -> list[tuple[str, str]]:
        """``(population, region)`` pairs in output order: ``A1..A6`` in region ``A``, then ``B1`` ..."""
        return [(f"{chr(ord('A') + r)}{k + 1}", chr(ord('A') + r))
                for r in range(self.regions) for k in range(self.per_region)]


def regions_demography(params: RegionsParameters | None = None):
    """:class:`RegionsParameters` as an :class:`msprime.Demography` (sampled populations ``A1`` ... ``D6``).

    Not a published model: a controlled stand-in for diversity panels with many small populations
    nested in regions (HGDP-like), where population labels are many and thin.
    """
    import msprime

    p = params or RegionsParameters()
    demography = msprime.Demography()
    names = p.names()
    for pop, region in names:
        demography.add_population(name=pop, description=f"population {pop} of region {region}", initial_size=p.N)
    regions = sorted({r for _, r in names})
    for region in regions:
        demography.add_population(name=f"anc_{region}", description=f"ancestor of region {region}", initial_size=p.N)
    demography.add_population(name="ANC", description="ancestor of all regions", initial_size=p.N)
    for region in regions:
        members = [pop for pop, r in names if r == region]
        if p.m_within > 0 and len(members) > 1:
            demography.set_symmetric_migration_rate(members, p.m_within)
        demography.add_population_split(time=p.T_pop, derived=members, ancestral=f"anc_{region}")
    demography.add_population_split(time=p.T_region, derived=[f"anc_{r}" for r in regions], ancestral="ANC")
    demography.sort_events()
    return demography


@dataclass(frozen=True)
class OutOfAfricaParameters:
    """Gutenkunst et al. (2009) three-population out-of-Africa model (their Table 1, "YRI-CEU-CHB").

    Sizes are diploid individuals, times are years (converted with ``generation_time``), rates
    are per generation. The values are the maximum-likelihood estimates used by stdpopsim's
    ``HomSap/OutOfAfrica_3G09``.
    """

    N_A: float = 7_300  # ancestral population size
    N_AF: float = 12_300  # African (YRI) size after the ancestral expansion
    N_B: float = 2_100  # out-of-Africa bottleneck (Eurasian ancestral) size
    N_EU0: float = 1_000  # CEU size at the EU/AS split
    N_AS0: float = 510  # CHB size at the EU/AS split
    r_EU: float = 0.004  # CEU exponential growth rate per generation
    r_AS: float = 0.0055  # CHB exponential growth rate per generation
    T_AF_years: float = 220e3  # ancestral expansion in Africa
    T_B_years: float = 140e3  # out-of-Africa split (YRI | Eurasian ancestor)
    T_EU_AS_years: float = 21.2e3  # CEU | CHB split
    generation_time: float = 25.0  # years per generation
    m_AF_B: float = 25e-5  # YRI <-> Eurasian ancestor migration
    m_AF_EU: float = 3e-5  # YRI <-> CEU migration
    m_AF_AS: float = 1.9e-5  # YRI <-> CHB migration
    m_EU_AS: float = 9.6e-5  # CEU <-> CHB migration
    # Recent explosive growth (used only with ``recent_expansion=True``): Tennessen et al. (2012)
    # rates from 5,115 years ago, applied to this model's sizes at that time.
    T_G_years: float = 5_115.0  # onset of the recent expansion
    r_AF_recent: float = 0.0166  # YRI growth rate per generation since T_G
    r_EU_recent: float = 0.0195  # CEU growth rate per generation since T_G
    r_AS_recent: float = 0.0195  # CHB: Tennessen et al. did not model East Asians; the European rate


def out_of_africa_demography(params: OutOfAfricaParameters | None = None, *, recent_expansion: bool = False):
    """The three-population out-of-Africa model as an :class:`msprime.Demography`.

    Sampled populations ``YRI``, ``CEU``, ``CHB``; ancestral populations ``OOA`` (the Eurasian
    bottleneck), ``AMH`` (anatomically modern humans) and ``ANC`` (ancestral).

    Parameters
    ----------
    params : OutOfAfricaParameters, optional
        Defaults to the published estimates.
    recent_expansion : bool
        Add the explosive growth of the last ``T_G_years`` (Tennessen et al. 2012): each sampled
        population grows from its size in this model at that time at ``r_*_recent`` per
        generation, to about 0.37 M (YRI), 0.71 M (CEU) and 0.95 M (CHB) people today instead of
        12,300 / 29,700 / 54,000. The published model fits the allele-frequency spectrum of ~100
        people per population; with thousands sampled, its small present sizes make the sample a
        few per cent of each population, full of cryptic relatives who share long haplotypes.

    Returns
    -------
    msprime.Demography

    References
    ----------
    Gutenkunst et al. (2009) PLoS Genetics 5(10): e1000695.
    """
    import msprime

    p = params or OutOfAfricaParameters()
    T_AF = p.T_AF_years / p.generation_time
    T_B = p.T_B_years / p.generation_time
    T_EU_AS = p.T_EU_AS_years / p.generation_time
    # Present-day sizes after exponential growth since the EU/AS split.
    N_EU = p.N_EU0 * math.exp(p.r_EU * T_EU_AS)
    N_AS = p.N_AS0 * math.exp(p.r_AS * T_EU_AS)

    demography = msprime.Demography()
    demography.add_population(name="YRI", description="Yoruba in Ibadan, Nigeria", initial_size=p.N_AF)
    demography.add_population(name="CEU", description="Utah residents of Northern/Western European ancestry",
                              initial_size=N_EU, growth_rate=p.r_EU)
    demography.add_population(name="CHB", description="Han Chinese in Beijing, China",
                              initial_size=N_AS, growth_rate=p.r_AS)
    demography.add_population(name="OOA", description="Out-of-Africa bottleneck (Eurasian ancestor)",
                              initial_size=p.N_B)
    demography.add_population(name="AMH", description="Anatomically modern humans", initial_size=p.N_AF)
    demography.add_population(name="ANC", description="Ancestral equilibrium population", initial_size=p.N_A)
    demography.set_symmetric_migration_rate(["YRI", "CEU"], p.m_AF_EU)
    demography.set_symmetric_migration_rate(["YRI", "CHB"], p.m_AF_AS)
    demography.set_symmetric_migration_rate(["CEU", "CHB"], p.m_EU_AS)
    demography.add_population_split(time=T_EU_AS, derived=["CEU", "CHB"], ancestral="OOA")
    demography.add_symmetric_migration_rate_change(time=T_EU_AS, populations=["YRI", "OOA"], rate=p.m_AF_B)
    demography.add_population_split(time=T_B, derived=["YRI", "OOA"], ancestral="AMH")
    demography.add_population_split(time=T_AF, derived=["AMH"], ancestral="ANC")
    if recent_expansion:
        T_G = p.T_G_years / p.generation_time
        for name, rate in (("YRI", p.r_AF_recent), ("CEU", p.r_EU_recent), ("CHB", p.r_AS_recent)):
            pop = demography[name]
            size_then = pop.initial_size * math.exp(-pop.growth_rate * T_G)  # this model's size at T_G
            demography.add_population_parameters_change(time=T_G, population=name, initial_size=size_then,
                                                        growth_rate=pop.growth_rate)
            pop.initial_size, pop.growth_rate = size_then * math.exp(rate * T_G), rate
    demography.sort_events()
    return demography


def _stdpopsim_model(name: str):
    """The stdpopsim ``HomSap`` demographic model ``name``, or :class:`InputError` listing the ids."""
    import stdpopsim

    species = stdpopsim.get_species("HomSap")
    ids = [m.id for m in species.demographic_models]
    if name not in ids:
        raise InputError(f"unknown demographic model {name!r}; use --model builtin (default), regions or one of stdpopsim's "
                         f"HomSap models: {', '.join(ids)}")
    return species.get_demographic_model(name)


def model_populations(name: str = BUILTIN_MODEL) -> list[str]:
    """The populations a demographic model can sample, in the model's order.

    >>> model_populations()
    ['YRI', 'CEU', 'CHB']
    """
    if name == BUILTIN_MODEL:
        return list(SUPER_POPULATION)
    if name == REGIONS_MODEL:
        return [pop for pop, _ in RegionsParameters().names()]
    return [p.name for p in _stdpopsim_model(name).populations if p.allow_samples]


def demographic_model(name: str = BUILTIN_MODEL, *, recent_expansion: bool = False) -> tuple[Any, dict[str, Any]]:
    """An :class:`msprime.Demography` and its provenance (``model``, ``model_citation``, ``model_parameters``).

    ``"builtin"`` is :func:`out_of_africa_demography` (Gutenkunst et al. 2009 written out with
    population splits; the default, whose output for a seed is unchanged). Any other name is a
    stdpopsim ``HomSap`` model id (``OutOfAfrica_3G09``, ``OutOfAfrica_2T12``, ``AmericanAdmixture_4B18``
    ...), taken from the catalogue as published with its citations; only the demography is used
    (flat recombination and mutation rates of ``simulate_cohort``, no genetic-map download).
    stdpopsim writes ``OutOfAfrica_3G09`` with mass migrations rather than population splits: the
    same model, but msprime draws a different genealogy for the same seed than ``"builtin"``.

    References
    ----------
    Adrion J. R. et al. (2020) A community-maintained standard library of population genetic
    models. eLife 9: e54967. (stdpopsim)
    """
    if name == BUILTIN_MODEL:
        info = {"model": EXPANSION_MODEL_NAME if recent_expansion else MODEL_NAME,
                "model_citation": MODEL_CITATION + ("; " + EXPANSION_CITATION if recent_expansion else ""),
                "model_parameters": dataclasses.asdict(OutOfAfricaParameters())}
        return out_of_africa_demography(recent_expansion=recent_expansion), info
    if name == REGIONS_MODEL:
        info = {"model": "genosynth regions (hierarchical island model, 4 x 6 populations)",
                "model_citation": "a controlled hierarchical island model (genosynth.simulation.regions_demography); "
                                  "not a published demography",
                "model_parameters": dataclasses.asdict(RegionsParameters())}
        return regions_demography(), info
    import stdpopsim

    model = _stdpopsim_model(name)
    cites = "; ".join(f"{c.author} ({c.year}) doi:{re.sub(r'^https?://(dx[.])?doi[.]org/', '', c.doi)}"
                      for c in model.citations)
    info = {"model": f"stdpopsim HomSap/{model.id}",
            "model_citation": f"{cites}; as catalogued by stdpopsim {stdpopsim.__version__} (Adrion et al. 2020)",
            "model_parameters": {"id": model.id, "description": model.description,
                                 "generation_time": model.generation_time,
                                 "populations": model_populations(name), "stdpopsim_version": stdpopsim.__version__}}
    return model.model, info


@dataclass
class SimulationConfig:
    """Options of :func:`simulate_cohort` (all recorded in ``cohort.meta["simulation"]``)."""

    n_samples: int = 1500  # diploid people, split evenly across populations (remainder to the first)
    sequence_length: int = 2_000_000  # simulated region, base pairs
    populations: tuple[str, ...] = ("YRI", "CEU", "CHB")  # sampled populations, in output order
    maf: float = 0.05  # keep SNPs with minor allele frequency >= maf in the simulated cohort
    max_snps: int | None = None  # thin evenly (by rank along the region) to at most this many SNPs
    min_spacing_bp: int = 0  # keep SNPs at least this far apart (greedy along the chromosome), before max_snps
    recombination_rate: float = 1e-8  # per base pair per generation (uniform map)
    mutation_rate: float = 1.25e-8  # per base pair per generation
    chrom: str = "1"  # chromosome name written to the variant table
    ref_allele: str = "reference_haplotype"  # "reference_haplotype" or "ancestral" (see simulate_cohort)
    reference_population: str = "CEU"  # population of the extra, unsampled reference-genome haplotype
    recent_expansion: bool = False  # add Tennessen et al. (2012)'s recent growth (out_of_africa_demography)
    # Demographic model: "builtin" (out_of_africa_demography, the default) or a stdpopsim HomSap model id
    # such as "OutOfAfrica_3G09" or "OutOfAfrica_2T12" (see demographic_model()).
    demographic_model: str = BUILTIN_MODEL
    # Several chromosomes, in output order (empty: the one chromosome ``chrom``). Each is simulated
    # independently (own msprime ancestry and mutations, seeds derived from the one seed) for the same
    # people under the same demography; ``max_snps`` applies per chromosome.
    chromosomes: tuple[str, ...] = ()
    chromosome_lengths: tuple[int, ...] = ()  # bp per chromosome (empty: ``sequence_length`` each)
    phased: bool = True  # False: the cohort holds genotypes (ALT counts); phase is dropped
    missing_rate: float = 0.0  # fraction of genotype calls set missing at random (seeded), after the trait

    def chromosome_plan(self) -> list[tuple[str, int]]:
        """``(name, length in bp)`` of each simulated chromosome, in output order."""
        names = tuple(str(c) for c in self.chromosomes) or (str(self.chrom),)
        lengths = tuple(int(n) for n in self.chromosome_lengths) or (int(self.sequence_length),) * len(names)
        return list(zip(names, lengths))

    def validate(self) -> None:
        """Raise :class:`InputError` naming the fix for an impossible option."""
        if int(self.n_samples) != self.n_samples or self.n_samples < 1:
            raise InputError(f"n_samples must be a positive integer (e.g. --n 1500), got {self.n_samples}")
        sampled = model_populations(self.demographic_model)
        builtin = self.demographic_model == BUILTIN_MODEL
        where = "the out-of-Africa model" if builtin else f"stdpopsim model {self.demographic_model}"
        if not self.populations:
            raise InputError(f"populations is empty; give one or more of {', '.join(sampled)}")
        unknown = [p for p in self.populations if p not in sampled]
        if unknown:
            raise InputError(f"unknown population(s) {unknown}; {where} has {', '.join(sampled)}: choose --populations "
                             "among those (or another --model)")
        if self.recent_expansion and not builtin:
            raise InputError("recent_expansion applies to the built-in out-of-Africa model only; drop --recent-expansion "
                             "(stdpopsim's OutOfAfrica_2T12 is Tennessen et al.'s model with its expansion)")
        if len(set(self.populations)) != len(self.populations):
            raise InputError(f"populations listed twice in {list(self.populations)}; list each once")
        if self.sequence_length < 1_000:
            raise InputError(
                f"sequence_length must be >= 1000 bp, got {self.sequence_length}; use e.g. 2_000_000 (--length-mb 2)"
            )
        if not 0.0 <= self.maf < 0.5:
            raise InputError(f"maf must lie in [0, 0.5), got {self.maf}; 0.05 keeps common SNPs")
        if self.min_spacing_bp < 0:
            raise InputError(f"min_spacing_bp must be >= 0, got {self.min_spacing_bp}; e.g. 100_000 (--min-spacing-kb 100)")
        if self.max_snps is not None and self.max_snps < 1:
            raise InputError(f"max_snps must be >= 1 (or None for no thinning), got {self.max_snps}")
        if not 0.0 <= self.recombination_rate < 1e-4:
            raise InputError(f"recombination_rate must lie in [0, 1e-4) per bp, got {self.recombination_rate}")
        if not 0.0 < self.mutation_rate < 1e-4:
            raise InputError(f"mutation_rate must lie in (0, 1e-4) per bp, got {self.mutation_rate}")
        self._validate_chromosomes()
        if not 0.0 <= self.missing_rate < 1.0:
            raise InputError(f"missing_rate must lie in [0, 1), got {self.missing_rate}; e.g. 0.05 for 5 % missing calls")
        if self.ref_allele not in ("reference_haplotype", "ancestral"):
            raise InputError(f"ref_allele must be 'reference_haplotype' or 'ancestral', got {self.ref_allele!r}")
        if self.reference_population not in sampled:
            raise InputError(
                f"reference_population must be one of {', '.join(sampled)}, got {self.reference_population!r}"
            )

    def _validate_chromosomes(self) -> None:
        names = tuple(str(c) for c in self.chromosomes) or (str(self.chrom),)
        for name in names:
            if not name or any(c.isspace() or c in ",;:" for c in name):
                raise InputError(f"chrom must be a non-empty name without spaces, commas or colons, got {name!r}")
        if len(set(names)) != len(names):
            raise InputError(f"chrom: chromosome names listed twice in {list(names)}; list each once")
        if self.chromosome_lengths and len(self.chromosome_lengths) != len(names):
            raise InputError(f"sequence_length: {len(self.chromosome_lengths)} lengths for {len(names)} chromosomes; "
                             "give one length for all or one per chromosome")
        for _, length in self.chromosome_plan():
            if length < 1_000:
                raise InputError(f"sequence_length must be >= 1000 bp, got {length}; use e.g. 2_000_000 (--length-mb 2)")


@dataclass
class PhenotypeSpec:
    """A binary trait under the liability-threshold model with known causal SNPs.

    Liability ``L = sqrt(h2) * G / sd(G) + sqrt(1 - h2) * E`` with ``G`` the genetic value (sum of
    causal effects times centred ALT counts) and ``E ~ N(0, 1)``; a person is a case when ``L`` is
    above the ``1 - prevalence`` quantile of ``L`` in the cohort, so the case fraction equals the
    prevalence up to rounding.
    """

    n_causal: int = 30  # number of causal SNPs
    heritability: float = 0.5  # h2: share of liability variance explained by the causal SNPs
    prevalence: float = 0.3  # fraction of cases
    min_maf: float = 0.05  # causal SNPs are drawn among SNPs with MAF >= min_maf
    effect_distribution: str = "normal"  # "normal" or "laplace": effects per standardised genotype
    # Sample column whose groups get their mean genetic value removed ("pop"), so that the case
    # fraction is about the same in every population and population does not confound a GWAS;
    # None keeps between-population differences (cases then cluster in some populations).
    center_within: str | None = "pop"

    def validate(self) -> None:
        """Raise :class:`InputError` naming the fix for an impossible option."""
        if int(self.n_causal) != self.n_causal or self.n_causal < 1:
            raise InputError(f"n_causal must be a positive integer (e.g. --causal 30), got {self.n_causal}")
        if not 0.0 <= self.heritability <= 1.0:
            raise InputError(f"heritability must lie in [0, 1] (e.g. --h2 0.5), got {self.heritability}")
        if not 0.0 < self.prevalence < 1.0:
            raise InputError(f"prevalence must lie strictly between 0 and 1 (e.g. --prevalence 0.3), "
                             f"got {self.prevalence}")
        if not 0.0 <= self.min_maf < 0.5:
            raise InputError(f"min_maf must lie in [0, 0.5), got {self.min_maf}")
        if self.effect_distribution not in ("normal", "laplace"):
            raise InputError(f"effect_distribution must be 'normal' or 'laplace', got {self.effect_distribution!r}")


# ================================================================================ the cohort
def simulate_cohort(
    *,
    n_samples: int = 1500,
    sequence_length: int = 2_000_000,
    populations: tuple[str, ...] | list[str] | None = None,
    maf: float = 0.05,
    max_snps: int | None = None,
    min_spacing_bp: int = 0,
    recombination_rate: float = 1e-8,
    mutation_rate: float = 1.25e-8,
    chrom: str = "1",
    phenotype: PhenotypeSpec | None = None,
    seed: int | None = None,
    ref_allele: str = "reference_haplotype",
    reference_population: str | None = None,
    recent_expansion: bool = False,
    demographic_model: str = BUILTIN_MODEL,
    trait_model: str = "genosynth",
    chromosomes: int | tuple[str, ...] | list[str] | None = None,
    chromosome_lengths: tuple[int, ...] | list[int] | None = None,
    phased: bool = True,
    missing_rate: float = 0.0,
) -> Cohort:
    """Simulate a phased cohort under the out-of-Africa model (YRI / CEU / CHB) or a stdpopsim model.

    Ancestry by :func:`msprime.sim_ancestry` (Hudson coalescent, uniform recombination map), mutations
    by the binary model on a discrete genome, so every site is a biallelic SNP at a unique integer
    position. SNPs with minor allele frequency ``>= maf`` in the cohort are kept, then optionally
    thinned evenly to ``max_snps``. REF/ALT letters follow the human base composition with Ti/Tv
    2.1. With ``ref_allele="reference_haplotype"`` (default) REF is the allele of an extra simulated
    haplotype from ``reference_population`` outside the cohort (a reference genome), so ALT is the
    major allele at some SNPs; with ``"ancestral"`` REF is the ancestral allele.

    Parameters
    ----------
    n_samples : int
        Diploid people, split evenly across ``populations`` (the remainder to the first ones).
    sequence_length : int or sequence of int
        Length of the simulated region in bp: of each chromosome, or one length per chromosome.
    populations : sequence of str, optional
        Sampled populations of the model, in output order (default all; ``YRI, CEU, CHB`` built in).
    maf : float
        Minimum minor allele frequency of kept SNPs.
    max_snps, min_spacing_bp : int, optional
        Keep SNPs at least ``min_spacing_bp`` apart (0: all), then thin evenly (every k-th SNP by
        rank) to at most ``max_snps`` per chromosome.
    recombination_rate, mutation_rate : float - per bp per generation (flat).
    chrom : str
        Chromosome name in the variant table and ids (``chrom:pos_REF_ALT``).
    phenotype : PhenotypeSpec, optional
        Also simulate a binary trait; the truth goes to ``cohort.meta["truth"]``.
    seed : int, optional
        Master seed; ``None`` draws one, recorded in ``cohort.meta["simulation"]["seed"]``. The same
        seed and options give an identical cohort.
    ref_allele : {"reference_haplotype", "ancestral"}
    reference_population : str, optional
        Population of the reference-genome haplotype (default ``CEU``, else ``EUR``, else the first).
    recent_expansion : bool
        Built-in model plus the recent growth of Tennessen et al. (2012) (:func:`out_of_africa_demography`);
        use it for cohorts of thousands, which are otherwise full of cryptic relatives.
    demographic_model : str
        ``"builtin"``, ``"regions"`` (:func:`regions_demography`) or a stdpopsim ``HomSap`` model id
        (the function :func:`demographic_model`).
    trait_model : {"genosynth", "tstrait"}
        ``phenotype`` by :func:`simulate_phenotype` (default) or :func:`tstrait_phenotype` (one chromosome).
    chromosomes, chromosome_lengths : optional
        A count ``k`` (chromosomes ``1`` .. ``k``) or names, in output order (``None``: the one
        chromosome ``chrom``), and one length in bp each. The same people on every chromosome, each
        an independent msprime run with seeds derived from ``seed`` (the first one's SNPs equal a
        one-chromosome run's).
    phased : bool
        ``False`` returns genotypes (ALT counts, phase dropped).
    missing_rate : float
        Fraction of calls (person x SNP) set missing at random (seeded), after the trait, which
        sees complete genotypes; a phased missing call has both alleles missing.

    Returns
    -------
    Cohort
        Diploid; phased ``alleles`` int8 shape ``(2 * n_samples, n_snps)`` (unphased: ``(n_samples,
        n_snps)``), chromosomes one after the other. Samples ``sim_000001`` ... with ``pop``,
        ``super_pop``, random ``sex`` (1/2) and ``phenotype`` (NaN without ``phenotype``). Variants carry a ``cm`` column (uniform map).
        ``meta["simulation"]`` holds the options, seed, model, versions and counts (per chromosome
        in ``per_chromosome``).

    Examples
    --------
    >>> a = simulate_cohort(n_samples=12, sequence_length=50_000, maf=0.0, seed=7)
    >>> b = simulate_cohort(n_samples=12, sequence_length=50_000, maf=0.0, seed=7)
    >>> bool((a.alleles == b.alleles).all()) and a.variants.equals(b.variants)
    True
    """
    config = _resolve_config(demographic_model, populations, reference_population, n_samples=n_samples,
                             maf=float(maf), max_snps=None if max_snps is None else int(max_snps),
                             min_spacing_bp=int(min_spacing_bp),
                             recombination_rate=float(recombination_rate), mutation_rate=float(mutation_rate),
                             ref_allele=ref_allele, recent_expansion=bool(recent_expansion), phased=bool(phased),
                             missing_rate=float(missing_rate),
                             **_chromosome_fields(chromosomes, chrom, chromosome_lengths or sequence_length))
    return simulate_config(config, phenotype=phenotype, seed=seed, trait_model=trait_model)


def simulate_config(config: SimulationConfig, *, phenotype: PhenotypeSpec | None = None, seed: int | None = None,
                    trait_model: str = "genosynth", progress: bool = False) -> Cohort:
    """The cohort a :class:`SimulationConfig` describes (what :func:`simulate_cohort` runs), in its stages:
    genotypes chromosome by chromosome (``progress``: a bar of chromosomes done), the trait on the
    complete genotypes, missing calls, phase.
    """
    config.validate()
    if trait_model not in ("genosynth", "tstrait"):
        raise InputError(f"trait_model must be 'genosynth' or 'tstrait' (--trait-model), got {trait_model!r}")
    if trait_model == "tstrait" and phenotype is not None and len(config.chromosome_plan()) > 1:
        raise InputError("the tstrait trait model takes one chromosome; use --trait-model genosynth with several "
                         "chromosomes")
    if phenotype is not None:
        phenotype.validate()
    seed = resolve_seed(seed)
    # Independent streams for ancestry, mutations, letters/sex and the trait (further chromosomes and
    # missing calls draw from spawned streams, so a one-chromosome complete cohort is unchanged).
    s_anc, s_mut, s_letters, s_pheno = np.random.SeedSequence(seed).generate_state(4, dtype=np.uint32)
    cohort, tree = _simulate_genotypes(config, seed=seed, ancestry_seed=int(s_anc), mutation_seed=int(s_mut),
                                       rng=np.random.default_rng(int(s_letters)),
                                       keep_tree=phenotype is not None and trait_model == "tstrait", progress=progress)
    if phenotype is not None:
        _add_trait(cohort, tree, phenotype, trait_model=trait_model, seed=int(s_pheno))
    if config.missing_rate > 0:
        set_missing_at_random(cohort, config.missing_rate, rng=np.random.default_rng(
            np.random.SeedSequence(seed, spawn_key=(2,))))
    return cohort if config.phased else cohort.unphased()


def _add_trait(cohort: Cohort, tree: dict[str, Any], spec: PhenotypeSpec, *, trait_model: str, seed: int) -> None:
    """The trait of :func:`simulate_cohort` on the complete genotypes: ``phenotype`` column and ``meta["truth"]``."""
    if trait_model == "tstrait":
        y, truth = tstrait_phenotype(cohort, tree, spec, seed=seed)
    else:
        y, truth = simulate_phenotype(cohort, spec, seed=seed)
    per_chrom = cohort.meta["simulation"]["per_chromosome"]
    if len(per_chrom) > 1:  # where the causal SNPs' chromosomes lie, and how many SNPs each has
        truth["chromosomes"] = [{k: c[k] for k in ("chrom", "sequence_length", "snps")} for c in per_chrom]
    cohort.samples["phenotype"] = y
    cohort.meta["truth"] = truth


def _chromosome_fields(chromosomes, chrom, sequence_length) -> dict[str, Any]:
    """The :class:`SimulationConfig` fields ``chrom``, ``sequence_length``, ``chromosomes`` and
    ``chromosome_lengths`` from :func:`simulate_cohort`'s options."""
    if chromosomes is None or (not isinstance(chromosomes, (int, np.integer)) and len(chromosomes) == 0):
        names: tuple[str, ...] = (str(chrom),)
    elif isinstance(chromosomes, (int, np.integer)):
        if chromosomes < 1:
            raise InputError(f"chromosomes must be >= 1 (e.g. --chromosomes 5), got {chromosomes}")
        names = tuple(str(k) for k in range(1, int(chromosomes) + 1))
    else:
        names = tuple(str(c) for c in chromosomes)
    if np.ndim(sequence_length) == 0:
        lengths = (int(sequence_length),) * len(names)
    else:
        lengths = tuple(int(n) for n in sequence_length)
        if len(lengths) == 1:
            lengths = lengths * len(names)
        if len(lengths) != len(names):
            raise InputError(f"sequence_length: {len(lengths)} lengths for {len(names)} chromosomes; give one "
                             "length for all or one per chromosome (--length-mb 50 or --length-mb 50,40,30)")
    return {"chrom": names[0], "sequence_length": lengths[0], "chromosomes": names if len(names) > 1 else (),
            "chromosome_lengths": lengths if len(set(lengths)) > 1 else ()}


def set_missing_at_random(cohort: Cohort, rate: float, *, rng: np.random.Generator, block: int = 4096) -> None:
    """Set each genotype call (person x SNP) of ``cohort`` missing with probability ``rate``, in place.

    In a phased cohort both alleles of a missing call become ``-1``. Works in blocks of ``block``
    SNPs, so the extra memory does not grow with the number of SNPs.

    >>> c = simulate_cohort(n_samples=20, sequence_length=50_000, maf=0.0, seed=1)
    >>> set_missing_at_random(c, 0.2, rng=np.random.default_rng(0))
    >>> bool((c.genotypes() < 0).any()), bool(((c.alleles[0::2] < 0) == (c.alleles[1::2] < 0)).all())
    (True, True)
    """
    if not 0.0 <= rate < 1.0:
        raise InputError(f"missing rate must lie in [0, 1), got {rate}; e.g. --missing-rate 0.05")
    n, v = cohort.n_samples, cohort.n_variants
    for start in range(0, v, block):
        stop = min(start + block, v)
        hit = rng.random((n, stop - start), dtype=np.float32) < rate  # (N, b)
        for k in range(cohort.ploidy if cohort.phased else 1):  # each allele row of the person
            rows = cohort.alleles[k::cohort.ploidy, start:stop] if cohort.phased else cohort.alleles[:, start:stop]
            rows[hit] = -1  # a view: writes into cohort.alleles


def _resolve_config(model: str, populations, reference_population: str | None, **options) -> SimulationConfig:
    """The validated :class:`SimulationConfig`; populations and reference population default from the model."""
    sampled = model_populations(model)
    if populations is None:
        populations = sampled
    if reference_population is None:
        reference_population = next((p for p in ("CEU", "EUR") if p in sampled), sampled[0])
    config = SimulationConfig(populations=tuple(populations), reference_population=reference_population,
                              demographic_model=model, **options)
    config.validate()
    return config


def _simulate_genotypes(config: SimulationConfig, *, seed: int, ancestry_seed: int, mutation_seed: int,
                        rng: np.random.Generator, keep_tree: bool = True,
                        progress: bool = False) -> tuple[Cohort, dict[str, Any]]:
    """The cohort of :func:`simulate_cohort` without a trait, in its numbered stages, chromosome by chromosome.

    The first chromosome uses ``ancestry_seed``, ``mutation_seed`` and ``rng`` (then the sample
    table is drawn from ``rng``, as for one chromosome); chromosome ``k >= 1`` uses three seeds of
    ``SeedSequence(seed, spawn_key=(1, k))``. Also returns, for the last chromosome when
    ``keep_tree``, the tree sequence (``ts``, with the reference person's two haplotypes last), the
    kept SNPs' 0-based positions (``positions``) and the reference haplotype's derived-allele flag
    at them (``ref_hap``), which :func:`tstrait_phenotype` needs.
    """
    demography = demographic_model(config.demographic_model, recent_expansion=config.recent_expansion)[0]
    blocks, tables, per_chrom = [], [], []
    samples, first_pops, tree, seconds = None, None, {}, [0.0, 0.0]
    plan = config.chromosome_plan()
    bar = progress_bar(len(plan), "simulate", progress and len(plan) > 1, unit="chromosome")
    for k, (name, length) in enumerate(plan):
        if k == 0:
            seeds, letters = (ancestry_seed, mutation_seed), rng
        else:
            s_anc, s_mut, s_let = np.random.SeedSequence(seed, spawn_key=(1, k)).generate_state(3, dtype=np.uint32)
            seeds, letters = (int(s_anc), int(s_mut)), np.random.default_rng(int(s_let))
        haps, positions, ref_hap, hap_pops, stats = _simulate_chromosome(config, demography, length, seeds=seeds)
        tables.append(_variant_table(positions, ref_hap, config, letters, chrom=name))
        if k == 0:  # populations read back from the tree sequence, the same on every chromosome
            first_pops = hap_pops
            samples = _sample_table(hap_pops[:2 * config.n_samples:2], config, rng)
        elif not np.array_equal(hap_pops, first_pops):  # pragma: no cover - msprime orders samples by SampleSet
            raise RuntimeError("sample populations differ between chromosomes")
        blocks.append(haps)
        ts = stats.pop("ts")
        per_chrom.append({"chrom": name, "sequence_length": int(length),
                          **{k: v for k, v in stats.items() if not k.startswith("seconds")}})
        seconds[0] += stats["seconds"]
        seconds[1] += stats["seconds_ancestry"]
        if keep_tree:
            tree = {"ts": ts, "positions": positions, "ref_hap": ref_hap}
        del ts
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    alleles = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)  # (2N, V)
    del blocks
    variants = tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True)
    record = _simulation_record(config, seed=seed, per_chrom=per_chrom, seconds=seconds)
    cohort = Cohort(alleles=alleles, variants=variants, samples=samples, phased=True, ploidy=2,
                    meta={"source": "simulated", "simulation": record})
    return cohort, tree


def _simulate_chromosome(config: SimulationConfig, demography, length: int, *, seeds: tuple[int, int]):
    """Stages 1-2 for one chromosome: tree sequence, SNPs over the MAF cut-off, coded and thinned.

    Returns haps int8 (2N, V), 0-based positions (V,), the reference haplotype's derived flag
    (V,), the population of each sample haplotype and the chromosome's counts and seconds (with
    its tree sequence under ``ts``).
    """
    t0 = time.perf_counter()
    ts, hap_pops, t_anc = _simulate_tree_sequence(config, demography, length, ancestry_seed=seeds[0],
                                                  mutation_seed=seeds[1], t0=t0)
    haps, positions, n_segregating = _extract_snps(ts, 2 * config.n_samples, config.maf)  # (H_all, V)
    haps, positions, ref_hap, n_after_maf = _code_and_thin(haps, positions, config)  # (2N, V')
    stats = {"segregating_sites": int(n_segregating), "snps_after_maf": int(n_after_maf), "snps": len(positions),
             "seconds": round(time.perf_counter() - t0, 3), "seconds_ancestry": round(t_anc, 3), "ts": ts}
    return haps, positions, ref_hap, hap_pops, stats


def _simulate_tree_sequence(config: SimulationConfig, demography, length: int, *, ancestry_seed: int,
                            mutation_seed: int, t0: float):
    """Stage 1 of :func:`simulate_cohort`: ancestry then mutations with msprime for one chromosome.

    Returns the tree sequence, the population name of each sample haplotype (cohort first, then
    the reference person's two) and the seconds the ancestry took since ``t0``.
    """
    import msprime

    counts = _split_evenly(config.n_samples, len(config.populations))
    sample_sets = [msprime.SampleSet(c, population=p, ploidy=2)
                   for p, c in zip(config.populations, counts) if c > 0]
    # One extra person, always simulated so that ``ref_allele`` only changes the allele coding:
    # its first haplotype plays the reference genome.
    sample_sets.append(msprime.SampleSet(1, population=config.reference_population, ploidy=2))
    ts = msprime.sim_ancestry(
        samples=sample_sets,
        demography=demography,
        sequence_length=length,
        recombination_rate=config.recombination_rate,
        random_seed=ancestry_seed % (2**32 - 2) + 1,
    )
    t_anc = time.perf_counter() - t0
    names = np.array([ts.population(k).metadata["name"] for k in range(ts.num_populations)], dtype=object)
    hap_pops = names[ts.tables.nodes.population[ts.samples()]]  # (H_all,) population of each haplotype
    ts = msprime.sim_mutations(
        ts,
        rate=config.mutation_rate,
        model=msprime.BinaryMutationModel(),
        discrete_genome=True,
        random_seed=mutation_seed % (2**32 - 2) + 1,
    )
    return ts, hap_pops, t_anc


def _code_and_thin(haps: np.ndarray, positions: np.ndarray, config: SimulationConfig):
    """Stage 2: cohort haplotypes coded against the reference haplotype (or ancestral), spaced and thinned.

    SNPs closer than ``min_spacing_bp`` to the previous kept one are dropped first, then the rest
    are thinned evenly to ``max_snps``.

    Returns haps int8 (2N, V'), positions (V',), the reference haplotype's derived-allele flag
    (V',) (all 0 with ``ref_allele="ancestral"``) and the number of SNPs before thinning.
    """
    n_cohort_haps = 2 * config.n_samples
    ref_hap = haps[n_cohort_haps].copy()  # (V,) allele of the reference haplotype (0 ancestral, 1 derived)
    haps = np.ascontiguousarray(haps[:n_cohort_haps])  # (2N, V)
    if config.ref_allele == "reference_haplotype":
        haps ^= ref_hap[None, :]  # recode so that 0 = the reference haplotype's allele
    else:
        ref_hap[:] = 0

    n_after_maf = haps.shape[1]
    if config.min_spacing_bp > 0 and n_after_maf > 1:
        keep = spaced_positions(positions, config.min_spacing_bp)
        haps, positions, ref_hap = np.ascontiguousarray(haps[:, keep]), positions[keep], ref_hap[keep]
    if config.max_snps is not None and haps.shape[1] > config.max_snps:
        keep = np.unique(np.linspace(0, haps.shape[1] - 1, config.max_snps).round().astype(np.int64))
        haps = np.ascontiguousarray(haps[:, keep])
        positions = positions[keep]
        ref_hap = ref_hap[keep]
    return haps, positions, ref_hap, n_after_maf


def spaced_positions(positions: np.ndarray, spacing: int) -> np.ndarray:
    """Indices of a greedy left-to-right subset of sorted ``positions`` with gaps ``>= spacing``.

    >>> spaced_positions(np.array([0, 10, 50, 120, 130, 300]), 100).tolist()
    [0, 3, 5]
    """
    keep, last = [], None
    for i, x in enumerate(np.asarray(positions).tolist()):
        if last is None or x - last >= spacing:
            keep.append(i)
            last = x
    return np.asarray(keep, dtype=np.int64)


def _variant_table(positions: np.ndarray, ref_hap: np.ndarray, config: SimulationConfig, rng: np.random.Generator,
                   *, chrom: str):
    """Stage 3: 1-based positions, drawn REF/ALT letters (REF = the reference haplotype's allele) and cM."""
    ancestral, derived = _draw_letters(len(positions), rng)
    ref = np.where(ref_hap == 1, derived, ancestral)
    alt = np.where(ref_hap == 1, ancestral, derived)
    pos = positions.astype(np.int64) + 1  # 1-based, as in VCF / bim
    return make_variants(
        chrom=np.full(len(pos), chrom, dtype=object),
        pos=pos,
        ref=ref,
        alt=alt,
        cm=pos * config.recombination_rate * 100.0,
    )


def _sample_table(pops: np.ndarray, config: SimulationConfig, rng: np.random.Generator):
    """Stage 4: ids ``sim_000001`` ..., ``pop`` / ``super_pop`` and a random ``sex`` (1/2) per person."""
    width = max(6, len(str(config.n_samples)))
    ids = [f"sim_{i:0{width}d}" for i in range(1, config.n_samples + 1)]
    sex = rng.integers(1, 3, size=config.n_samples).astype(np.int8)
    region = dict(RegionsParameters().names()) if config.demographic_model == REGIONS_MODEL else {}
    return make_samples(ids, pop=pops, super_pop=[region.get(p) or STDPOPSIM_SUPER_POPULATION.get(p, p) for p in pops],
                        sex=sex)


def _simulation_record(config: SimulationConfig, *, seed: int, per_chrom: list[dict[str, Any]],
                       seconds: list[float]) -> dict[str, Any]:
    """Stage 5: ``cohort.meta["simulation"]``: options, seed, model, versions and counts.

    ``segregating_sites``, ``snps_after_maf``, ``snps`` and the seconds are totals over the
    chromosomes; ``per_chromosome`` lists each one's name, length and counts.
    """
    import msprime

    counts = _split_evenly(config.n_samples, len(config.populations))
    total = {key: sum(c[key] for c in per_chrom) for key in ("segregating_sites", "snps_after_maf", "snps")}
    return {
        **_config_dict(config),
        "seed": int(seed),
        **demographic_model(config.demographic_model, recent_expansion=config.recent_expansion)[1],
        "mutation_model": "binary (0 = ancestral, 1 = derived), discrete genome",
        "samples_per_population": {p: int(c) for p, c in zip(config.populations, counts)},
        **{key: int(value) for key, value in total.items()},
        "total_length": int(sum(c["sequence_length"] for c in per_chrom)),
        "per_chromosome": per_chrom,
        "chromosome_seeds": "the first chromosome: the one-chromosome streams; chromosome k >= 1 (0-based): "
                            "numpy SeedSequence(seed, spawn_key=(1, k)); missing calls: spawn_key=(2,)",
        "msprime_version": msprime.__version__,
        "seconds": round(seconds[0], 3),
        "seconds_ancestry": round(seconds[1], 3),
    }


def _extract_snps(ts, n_cohort_haps: int, maf: float, *, chunk: int = 4096):
    """Haplotypes of the sites passing the MAF filter (computed on the first ``n_cohort_haps``).

    Returns
    -------
    haps : int8, shape (n_sample_nodes, n_kept)
    positions : int64, shape (n_kept,), 0-based
    n_segregating : int, sites before the filter
    """
    n_sites = ts.num_sites
    blocks: list[np.ndarray] = []
    positions: list[float] = []
    min_count = math.ceil(maf * n_cohort_haps - 1e-9)
    buf = np.empty((chunk, ts.num_samples), dtype=np.int8)  # (chunk, H_all)
    buf_pos = np.empty(chunk, dtype=np.int64)
    filled = 0

    def flush(k: int) -> None:
        g = buf[:k]
        ac = g[:, :n_cohort_haps].sum(axis=1, dtype=np.int64)
        mac = np.minimum(ac, n_cohort_haps - ac)
        ok = (mac >= max(min_count, 1))
        if ok.any():
            blocks.append(g[ok])  # boolean indexing copies
            positions.extend(buf_pos[:k][ok].tolist())

    for var in ts.variants():
        buf[filled] = var.genotypes  # 0 ancestral / 1 derived (binary model)
        buf_pos[filled] = int(var.site.position)
        filled += 1
        if filled == chunk:
            flush(filled)
            filled = 0
    if filled:
        flush(filled)
    if blocks:
        site_major = np.concatenate(blocks, axis=0)  # (V, H_all)
        blocks.clear()  # one copy fewer at the peak
        haps = np.ascontiguousarray(site_major.T)  # (H_all, V)
        del site_major
    else:
        haps = np.zeros((ts.num_samples, 0), dtype=np.int8)
    return haps, np.asarray(positions, dtype=np.int64), n_sites


def _draw_letters(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ancestral and derived bases for ``n`` SNPs: human base composition, Ti/Tv = 2.1."""
    anc = rng.choice(_BASES, size=n, p=[0.295, 0.205, 0.205, 0.295])
    transition = rng.random(n) < 2.1 / 3.1
    pick = rng.integers(0, 2, size=n)
    der = np.array([_TRANSITION[a] if t else _TRANSVERSIONS[a][k] for a, t, k in zip(anc, transition, pick)],
                   dtype=object)
    return anc.astype(object), der


def _split_evenly(n: int, k: int) -> list[int]:
    base, extra = divmod(n, k)
    return [base + (1 if i < extra else 0) for i in range(k)]


def _config_dict(config: SimulationConfig) -> dict:
    d = dataclasses.asdict(config)
    d["populations"] = list(config.populations)
    d["chromosomes"] = list(config.chromosomes)
    d["chromosome_lengths"] = [int(n) for n in config.chromosome_lengths]
    return d


# ================================================================================ the trait
def _groups(cohort: Cohort, column: str | None) -> np.ndarray | None:
    """Group labels for centring, or None when ``column`` is None or has fewer than 2 labelled groups."""
    if column is None:
        return None
    if column not in cohort.samples.columns:
        raise InputError(
            f"center_within={column!r} is not a sample column (have {list(cohort.samples.columns)}); "
            "attach a sample table with that column or set center_within=None"
        )
    labels = cohort.labels(column)
    if (labels == "").any() or len(np.unique(labels)) < 2:
        return None
    return labels


def simulate_phenotype(cohort: Cohort, spec: PhenotypeSpec | None = None, *,
                       seed: int | None = None) -> tuple[np.ndarray, dict]:
    """Binary liability-threshold trait with known causal SNPs on any cohort.

    ``spec.n_causal`` SNPs are drawn uniformly among those with MAF ``>= spec.min_maf``; each gets
    an effect per standardised genotype from ``spec.effect_distribution``. The genetic value is
    centred within the groups of ``spec.center_within`` (default the ``pop`` column, when every
    sample has one and there are at least two), standardised over the cohort and mixed with
    Gaussian noise so that it explains ``h2`` of the liability; the top ``prevalence`` fraction of
    liabilities are cases. Centring removes each population's mean genetic value, so populations
    whose allele frequencies happen to raise risk do not collect the cases and population does
    not confound a case/control GWAS; the per-ALT-allele effects are the same in every group.
    Missing genotypes count as the SNP mean (no contribution).

    Parameters
    ----------
    cohort : Cohort
        Phased or unphased, any number of samples >= 2.
    spec : PhenotypeSpec, optional
        Defaults to ``PhenotypeSpec()`` (30 causal SNPs, h2 0.5, prevalence 0.3).
    seed : int, optional
        ``None`` draws one; it is recorded in the truth.

    Returns
    -------
    phenotype : float64, shape (n_samples,)
        1.0 case, 0.0 control.
    truth : dict
        JSON-serialisable: ``causal`` (list of dicts with ``id``, ``index``, ``chrom``, ``pos``,
        ``ref``, ``alt``, ``alt_freq``, ``effect_std`` (per standardised genotype),
        ``beta_per_alt`` (liability change per ALT allele), ``risk_allele``), ``heritability``,
        ``prevalence``, ``threshold`` (on the liability scale), ``n_cases``, ``n_controls``,
        ``realised_h2`` (variance share of the genetic term in this cohort), ``centered_within``
        (the column used, or None), ``group_offsets`` (the mean removed per group, liability
        scale), ``seed``, ``model``, ``spec``.

    References
    ----------
    Falconer D. S. (1965) Annals of Human Genetics 29(1): 51-76.
    """
    spec = spec or PhenotypeSpec()
    spec.validate()
    if cohort.n_samples < 2:
        raise InputError(f"a phenotype needs at least 2 samples, the cohort has {cohort.n_samples}")
    seed = resolve_seed(seed)
    rng = np.random.default_rng(seed)

    af = cohort.allele_frequencies()  # (V,)
    causal, effect_std = _draw_causal_effects(af, spec, rng)  # (C,), (C,)
    p = af[causal]  # (C,)
    sd = np.sqrt(2.0 * p * (1.0 - p))  # HWE sd of the ALT count
    genetic, offsets, groups = _genetic_values(cohort, causal, effect_std, p, sd, spec)  # (N,)
    g_sd = genetic.std()
    if not g_sd > 0:
        raise InputError("the causal SNPs do not vary in this cohort; use a cohort with polymorphic SNPs")
    scale = math.sqrt(spec.heritability) / g_sd
    genetic_part = (genetic - genetic.mean()) * scale  # (N,)
    noise = rng.standard_normal(cohort.n_samples) * math.sqrt(1.0 - spec.heritability)  # (N,)
    liability = genetic_part + noise  # (N,)
    threshold = float(np.quantile(liability, 1.0 - spec.prevalence))
    phenotype = (liability > threshold).astype(np.float64)

    var_l = float(liability.var())
    truth = {
        "model": "liability threshold: L = sqrt(h2) * standardised genetic value + sqrt(1 - h2) * N(0, 1); "
                 "case if L > threshold (the 1 - prevalence quantile of L)",
        **_threshold_truth(spec, phenotype, threshold=threshold,
                           realised_h2=float(genetic_part.var() / var_l) if var_l > 0 else float("nan"),
                           grouped=groups is not None, offsets=offsets, scale=scale, seed=seed),
        "causal": _causal_rows(cohort, causal, effect_std, effect_std * scale / sd, af),
    }
    return phenotype, truth


def _draw_causal_effects(af: np.ndarray, spec: PhenotypeSpec,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1 of :func:`simulate_phenotype`: sorted causal SNP indices among MAF >= ``min_maf`` and their effects."""
    maf = np.minimum(af, 1.0 - af)
    eligible = np.flatnonzero(np.isfinite(maf) & (maf >= spec.min_maf) & (maf > 0))
    if len(eligible) < spec.n_causal:
        raise InputError(
            f"only {len(eligible)} SNPs have MAF >= {spec.min_maf}, fewer than the {spec.n_causal} causal SNPs "
            "asked for; lower --causal, lower the MAF cut-off or simulate a longer region (--length-mb)"
        )
    causal = np.sort(rng.choice(eligible, size=spec.n_causal, replace=False))  # (C,)
    if spec.effect_distribution == "normal":
        effect_std = rng.standard_normal(spec.n_causal)  # (C,)
    else:
        effect_std = rng.laplace(0.0, 1.0 / math.sqrt(2.0), size=spec.n_causal)
    return causal, effect_std


def _genetic_values(cohort: Cohort, causal: np.ndarray, effect_std: np.ndarray, p: np.ndarray, sd: np.ndarray,
                    spec: PhenotypeSpec) -> tuple[np.ndarray, dict[str, float], np.ndarray | None]:
    """Stage 2: genetic value per person (standardised genotypes times effects), centred within groups.

    Returns the values (N,), the mean removed per group (genetic scale) and the group labels
    (``None`` when not centred).
    """
    g = cohort.genotypes()[:, causal].astype(np.float64)  # (N, C) ALT counts, -1 missing
    mean = 2.0 * p
    g = np.where(g < 0, mean[None, :], g)
    z = (g - mean[None, :]) / sd[None, :]  # (N, C) standardised genotypes
    genetic = z @ effect_std  # (N,)
    offsets: dict[str, float] = {}
    groups = _groups(cohort, spec.center_within)
    if groups is not None:
        for label in np.unique(groups):
            member = groups == label
            offsets[str(label)] = float(genetic[member].mean())
            genetic[member] -= offsets[str(label)]
    return genetic, offsets, groups



def _threshold_truth(spec, phenotype: np.ndarray, *, threshold: float, realised_h2: float, grouped: bool,
                     offsets: dict, scale: float, seed: int) -> dict:
    """The fields of ``truth.json`` that every liability-threshold trait model shares (in file order)."""
    return {
        "spec": dataclasses.asdict(spec),
        "heritability": float(spec.heritability),
        "prevalence": float(spec.prevalence),
        "threshold": threshold,
        "n_cases": int(phenotype.sum()),
        "n_controls": int(len(phenotype) - phenotype.sum()),
        "realised_h2": realised_h2,
        "centered_within": spec.center_within if grouped else None,
        "group_offsets": {k: float(o * scale) for k, o in offsets.items()},  # removed mean, liability scale
        "seed": int(seed),
    }

def _causal_rows(cohort: Cohort, causal: np.ndarray, effect_std: np.ndarray, beta_per_alt: np.ndarray,
                 af: np.ndarray) -> list[dict[str, Any]]:
    """Stage 3: the truth's ``causal`` list (id, position, alleles, frequency, effects, risk allele)."""
    v = cohort.variants
    return [
        {
            "id": str(v["id"].iat[j]),
            "index": int(j),
            "chrom": str(v["chrom"].iat[j]),
            "pos": int(v["pos"].iat[j]),
            "ref": str(v["ref"].iat[j]),
            "alt": str(v["alt"].iat[j]),
            "alt_freq": float(af[j]),
            "effect_std": float(e),
            "beta_per_alt": float(b),
            "risk_allele": str(v["alt"].iat[j] if b > 0 else v["ref"].iat[j]),
        }
        for j, e, b in zip(causal, effect_std, beta_per_alt)
    ]

def tstrait_phenotype(cohort: Cohort, tree: dict[str, Any], spec: PhenotypeSpec | None = None, *,
                      seed: int | None = None) -> tuple[np.ndarray, dict]:
    """Binary liability-threshold trait simulated with tstrait on the cohort's tree sequence.

    The same model as :func:`simulate_phenotype`, drawn by tstrait: the tree sequence is reduced
    to the cohort's haplotypes and to its kept SNPs with MAF ``>= spec.min_maf``;
    :func:`tstrait.sim_trait` picks ``spec.n_causal`` causal sites and a causal allele at each,
    with effects from ``tstrait.trait_model("normal", mean=0, var=1)`` and frequency dependence
    ``alpha=-1`` (effect per allele = effect / sqrt(2p(1-p)), i.e. N(0, 1) per standardised
    genotype); :func:`tstrait.genetic_value` sums them over the trees; the genetic value is centred
    within ``spec.center_within``; :func:`tstrait.sim_env` adds Gaussian noise for heritability
    ``h2``. The liability is scaled to unit variance and the top ``prevalence`` fraction are cases.
    Only the normal effect distribution is available here, and ``h2`` must be > 0.

    Parameters
    ----------
    cohort : Cohort
        From :func:`simulate_cohort` (haplotype rows in tree-sequence sample order).
    tree : dict
        ``ts``, ``positions`` (0-based, of the cohort's SNPs) and ``ref_hap`` (1 where the reference
        haplotype, hence REF, carries the derived allele), as :func:`simulate_cohort` keeps them.
    spec : PhenotypeSpec, optional
    seed : int, optional

    Returns
    -------
    phenotype : float64, shape (n_samples,)
    truth : dict
        The keys of :func:`simulate_phenotype`'s truth, with ``trait_model`` ``"tstrait"``;
        ``beta_per_alt`` is the liability change per ALT allele, so the genetic value is
        ``genotypes[:, index] @ beta_per_alt`` up to a constant.

    References
    ----------
    Tagami D., Bisschop G., Kelleher J. (2023) tstrait: a quantitative trait simulator of tree
    sequence data. https://github.com/tskit-dev/tstrait
    """
    import tstrait

    spec = spec or PhenotypeSpec()
    spec.validate()
    if spec.effect_distribution != "normal" or not spec.heritability > 0:
        raise InputError("the tstrait trait model takes normal effects and h2 > 0; use --trait-model genosynth "
                         "for --h2 0 or Laplace effects")
    seed = resolve_seed(seed)
    s_trait, s_env = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint32)
    af = cohort.allele_frequencies()  # (V,)
    ts, eligible = _cohort_tree(cohort, tree, af, spec)
    trait_df = tstrait.sim_trait(ts, model=tstrait.trait_model(distribution="normal", mean=0, var=1),
                                 num_causal=spec.n_causal, alpha=-1, random_seed=int(s_trait))
    genetic_df = tstrait.genetic_value(ts, trait_df)  # one row per individual, cohort order
    genetic = genetic_df["genetic_value"].to_numpy(dtype=np.float64).copy()  # (N,)
    offsets: dict[str, float] = {}
    groups = _groups(cohort, spec.center_within)
    if groups is not None:
        for label in np.unique(groups):
            offsets[str(label)] = float(genetic[groups == label].mean())
            genetic[groups == label] -= offsets[str(label)]
    if not genetic.std() > 0:
        raise InputError("the causal SNPs do not vary in this cohort; use a cohort with polymorphic SNPs")
    pheno_df = tstrait.sim_env(genetic_df.assign(genetic_value=genetic), h2=spec.heritability,
                               random_seed=int(s_env))
    liability = pheno_df["phenotype"].to_numpy(dtype=np.float64)  # (N,)
    scale = 1.0 / liability.std()
    liability = (liability - liability.mean()) * scale  # unit variance, as in simulate_phenotype
    threshold = float(np.quantile(liability, 1.0 - spec.prevalence))
    phenotype = (liability > threshold).astype(np.float64)

    causal = eligible[trait_df["site_id"].to_numpy()]  # (C,) cohort SNP index of each causal site
    derived_causal = trait_df["causal_allele"].to_numpy() == "1"
    alt_causal = derived_causal != (tree["ref_hap"][causal] == 1)  # the causal allele is the ALT allele
    beta = trait_df["effect_size"].to_numpy(dtype=np.float64) * scale  # per causal allele, liability scale
    beta_per_alt = np.where(alt_causal, beta, -beta)  # (C,)
    p = af[causal]
    truth = {
        "model": "liability threshold with tstrait: effects N(0, 1) per standardised genotype (alpha -1), "
                 "genetic value from tstrait.genetic_value, noise from tstrait.sim_env(h2), liability scaled "
                 "to variance 1; case if L > threshold (the 1 - prevalence quantile of L)",
        "trait_model": "tstrait",
        "tstrait_version": tstrait.__version__,
        **_threshold_truth(spec, phenotype, threshold=threshold,
                           realised_h2=float((genetic * scale).var() / liability.var()),
                           grouped=groups is not None, offsets=offsets, scale=scale, seed=seed),
        "causal": _causal_rows(cohort, causal, beta_per_alt * np.sqrt(2.0 * p * (1.0 - p)), beta_per_alt, af),
    }
    return phenotype, truth


def _cohort_tree(cohort: Cohort, tree: dict[str, Any], af: np.ndarray, spec: PhenotypeSpec):
    """The tree sequence of the cohort's haplotypes with only its SNPs of MAF >= ``min_maf`` as sites.

    Returns the tree sequence and, per remaining site, the cohort SNP index (int64, shape (S,)).
    """
    ts = tree["ts"]
    maf = np.minimum(af, 1.0 - af)
    eligible = np.flatnonzero(maf >= spec.min_maf)  # (S,) cohort SNP indices
    if len(eligible) < spec.n_causal:
        raise InputError(
            f"only {len(eligible)} SNPs have MAF >= {spec.min_maf}, fewer than the {spec.n_causal} causal SNPs "
            "asked for; lower --causal, lower the MAF cut-off or simulate a longer region (--length-mb)"
        )
    ts = ts.simplify(samples=ts.samples()[: 2 * cohort.n_samples], filter_sites=False)
    keep_pos = tree["positions"][eligible].astype(np.float64)
    site_pos = ts.tables.sites.position  # (all sites,)
    ts = ts.delete_sites(np.flatnonzero(~np.isin(site_pos, keep_pos)))
    if ts.num_sites != len(eligible) or ts.num_individuals != cohort.n_samples:
        raise RuntimeError("tree sequence and cohort disagree")  # pragma: no cover - an internal invariant
    return ts, eligible


__all__ = [
    "MODEL_NAME",
    "EXPANSION_MODEL_NAME",
    "SUPER_POPULATION",
    "OutOfAfricaParameters",
    "PhenotypeSpec",
    "SimulationConfig",
    "out_of_africa_demography",
    "simulate_cohort",
    "simulate_config",
    "set_missing_at_random",
    "simulate_phenotype",
    "tstrait_phenotype",
    "demographic_model",
    "model_populations",
    "BUILTIN_MODEL",
]
