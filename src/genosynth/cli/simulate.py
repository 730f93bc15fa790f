"""``genosynth simulate``: a simulated out-of-Africa cohort (msprime) with an optional binary trait.

Writes the cohort (``--format bed`` by default: PREFIX.bed/.bim/.fam), ``PREFIX.samples.tsv``,
``PREFIX.simulation.json`` (options, seed, model, versions), ``PREFIX.truth.json`` (causal SNPs
and effects, when a phenotype is simulated) and ``PREFIX.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from genosynth.cli.common import add_common_arguments, resolve_seed
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.provenance import provenance, versions

HELP = ("simulate a cohort (msprime; built-in out-of-Africa model or a stdpopsim model) with an optional "
        "case/control trait")

DEFAULT_FORMAT = "bed"
PHENOTYPE_DEFAULTS = {"causal": 30, "h2": 0.5, "prevalence": 0.3}


def add_arguments(parser) -> None:
    add_common_arguments(parser)
    g = parser.add_argument_group("cohort")
    g.add_argument("--n", type=int, default=1500, metavar="N",
                   help="diploid people, split evenly across the populations (default 1500)")
    g.add_argument("--length-mb", default="2", metavar="MB",
                   help="length of the simulated region in Mb, of each chromosome or one per chromosome "
                        "(e.g. 50,40,30) (default 2; ~1,100 SNPs per Mb at MAF 0.05 with 1,500 people, "
                        "~1,080 per Mb with 3,000 people and --recent-expansion)")
    g.add_argument("--maf", type=float, default=0.05,
                   help="keep SNPs with minor allele frequency >= MAF (default 0.05)")
    g.add_argument("--max-snps", "--snps-per-chrom", dest="max_snps", type=int, default=None, metavar="N",
                   help="thin evenly to at most N SNPs per chromosome")
    g.add_argument("--min-spacing-kb", type=float, default=0.0, metavar="KB",
                   help="keep only SNPs at least KB kilobases apart (greedy along each chromosome, before "
                        "--max-snps): a sparse, LD-pruned-like panel (default 0: all)")
    g.add_argument("--model", default="builtin", metavar="NAME",
                   help="demographic model: 'builtin' (default: Gutenkunst et al. 2009 out-of-Africa written out "
                        "here; --recent-expansion applies), 'regions' (24 populations A1..D6 in 4 regions: a hierarchical "
                        "island model for thin-data panels) or a stdpopsim HomSap model id, e.g. OutOfAfrica_3G09, "
                        "OutOfAfrica_2T12, AmericanAdmixture_4B18 (docs/simulate.md lists them)")
    g.add_argument("--populations", default=None, metavar="LIST",
                   help="comma-separated populations of the model, in output order (default all it can sample; "
                        "YRI,CEU,CHB for the built-in model)")
    g.add_argument("--chrom", default=None,
                   help="chromosome name, or comma-separated names of several chromosomes (default 1)")
    g.add_argument("--chromosomes", type=int, default=None, metavar="K",
                   help="simulate K chromosomes named 1..K: the same people on each, each chromosome an "
                        "independent msprime run of --length-mb under the same demography")
    g.add_argument("--recomb-rate", type=float, default=1e-8, metavar="RATE",
                   help="recombination rate per bp per generation (default 1e-8)")
    g.add_argument("--mut-rate", type=float, default=1.25e-8, metavar="RATE",
                   help="mutation rate per bp per generation (default 1.25e-8)")
    g.add_argument("--recent-expansion", action="store_true",
                   help="add the explosive growth of the last 5,115 years (Tennessen et al. 2012) to the model: "
                        "use it for cohorts of thousands, where the published model's small present sizes make "
                        "people cryptic relatives who share long identical haplotypes")
    g.add_argument("--ref-allele", choices=("reference", "ancestral"), default="reference",
                   help="REF = allele of a simulated reference-genome haplotype (default, as in real data) "
                        "or the ancestral allele")
    p = parser.add_argument_group("phenotype (liability-threshold case/control trait)")
    p.add_argument("--causal", type=int, default=None, metavar="K",
                   help=f"number of causal SNPs (default {PHENOTYPE_DEFAULTS['causal']})")
    p.add_argument("--h2", type=float, default=None,
                   help=f"heritability of liability, 0..1 (default {PHENOTYPE_DEFAULTS['h2']})")
    p.add_argument("--prevalence", type=float, default=None,
                   help=f"fraction of cases, between 0 and 1 (default {PHENOTYPE_DEFAULTS['prevalence']})")
    p.add_argument("--pop-effects", action="store_true",
                   help="keep between-population differences in genetic value (cases then cluster in some "
                        "populations); by default the genetic value is centred within each population")
    p.add_argument("--no-phenotype", action="store_true", help="simulate no trait (phenotype missing)")
    p.add_argument("--trait-model", choices=("genosynth", "tstrait"), default="genosynth",
                   help="'genosynth' (default): the trait drawn on the genotypes; 'tstrait': the same "
                        "liability-threshold model drawn by tstrait on the tree sequence (other output for a seed)")
    o = parser.add_argument_group("output")
    o.add_argument("--format", choices=("bed", "vcf", "hapt"), default=DEFAULT_FORMAT,
                   help=f"cohort file format (default {DEFAULT_FORMAT}; bed drops phase, vcf/hapt keep it)")
    o.add_argument("--unphased", action="store_true",
                   help="write genotypes without phase (a VCF with '/' calls; bed holds genotypes anyway)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar (of chromosomes simulated)")
    o.add_argument("--missing-rate", type=float, default=0.0, metavar="RATE",
                   help="fraction of genotype calls set missing at random, seeded (default 0; e.g. 0.05); "
                        "the trait is drawn on the complete genotypes")


def _check(args) -> tuple[object, object]:
    """Validate options before anything is simulated or written; return the SimulationConfig and the trait spec."""
    from genosynth.simulation import PhenotypeSpec, SimulationConfig, model_populations

    if args.n < 1:
        raise InputError(f"--n must be >= 1 diploid person, got {args.n}; e.g. --n 1500")
    names, lengths = chromosome_layout(args)
    if args.unphased and args.format == "hapt":
        raise InputError("--unphased cannot be written as .hapt (phased haplotypes); choose --format vcf or bed")
    try:
        sampled = model_populations(args.model)
    except InputError as exc:
        raise InputError(f"--model: {exc}") from None
    by_name = {p.upper(): p for p in sampled}
    populations = tuple(sampled) if args.populations is None else tuple(
        by_name.get(p.strip().upper(), p.strip()) for p in args.populations.split(",") if p.strip())
    config = SimulationConfig(
        n_samples=args.n, sequence_length=lengths[0], populations=populations,
        maf=args.maf, max_snps=args.max_snps, min_spacing_bp=_spacing_bp(args),
        recombination_rate=args.recomb_rate, mutation_rate=args.mut_rate, chrom=names[0], demographic_model=args.model,
        recent_expansion=args.recent_expansion,
        reference_population=next((p for p in ("CEU", "EUR") if p in sampled), sampled[0]),
        chromosomes=names if len(names) > 1 else (), chromosome_lengths=lengths if len(set(lengths)) > 1 else (),
        phased=not args.unphased, missing_rate=args.missing_rate,
        ref_allele="reference_haplotype" if args.ref_allele == "reference" else "ancestral",
    )
    try:
        config.validate()
    except InputError as exc:  # name the flag rather than the library field
        raise InputError(_flag_names(str(exc))) from None
    given = [f for f, v in (("--causal", args.causal), ("--h2", args.h2), ("--prevalence", args.prevalence)) if
             v is not None]
    if args.no_phenotype:
        if args.trait_model != "genosynth":
            given.append("--trait-model")
        if given or args.pop_effects:
            raise InputError(f"--no-phenotype conflicts with {', '.join(given) or '--pop-effects'}; drop one of them")
        return config, None
    spec = PhenotypeSpec(
        n_causal=PHENOTYPE_DEFAULTS["causal"] if args.causal is None else args.causal,
        heritability=PHENOTYPE_DEFAULTS["h2"] if args.h2 is None else args.h2,
        prevalence=PHENOTYPE_DEFAULTS["prevalence"] if args.prevalence is None else args.prevalence,
        min_maf=max(0.05, args.maf),
        center_within=None if args.pop_effects else "pop",
    )
    spec.validate()
    if args.trait_model == "tstrait" and not spec.heritability > 0:
        raise InputError("--trait-model tstrait needs --h2 > 0; use --trait-model genosynth for --h2 0")
    if args.trait_model == "tstrait" and len(names) > 1:
        raise InputError("--trait-model tstrait takes one chromosome; use --trait-model genosynth with several "
                         "chromosomes")
    return config, spec


def chromosome_layout(args) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Chromosome names and lengths (bp) from ``--chrom``, ``--chromosomes`` and ``--length-mb``."""
    if args.chromosomes is not None and args.chrom is not None:
        raise InputError("--chromosomes K names the chromosomes 1..K; drop --chrom, or list the names with "
                         "--chrom 1,2,3 instead of --chromosomes")
    if args.chromosomes is not None:
        if args.chromosomes < 1:
            raise InputError(f"--chromosomes must be >= 1, got {args.chromosomes}; e.g. --chromosomes 5")
        names = tuple(str(k) for k in range(1, args.chromosomes + 1))
    else:
        names = tuple(c.strip() for c in (args.chrom or "1").split(","))
    try:
        mb = [float(x) for x in str(args.length_mb).split(",")]
    except ValueError:
        raise InputError(f"--length-mb must be a number of Mb or one per chromosome (e.g. 2 or 50,40), "
                         f"got {args.length_mb!r}") from None
    if not all(x > 0 for x in mb):
        raise InputError(f"--length-mb must be > 0, got {args.length_mb}; e.g. --length-mb 2")
    if len(mb) not in (1, len(names)):
        raise InputError(f"--length-mb gives {len(mb)} lengths for {len(names)} chromosomes; give one length for "
                         "all or one per chromosome")
    lengths = tuple(int(round(x * 1e6)) for x in (mb * len(names) if len(mb) == 1 else mb))
    return names, lengths


def _spacing_bp(args) -> int:
    """``--min-spacing-kb`` in base pairs."""
    return int(round(args.min_spacing_kb * 1000))


def _flag_names(message: str) -> str:
    for field, flag in (("n_samples", "--n"), ("sequence_length", "--length-mb"), ("max_snps", "--max-snps"),
                        ("min_spacing_bp", "--min-spacing-kb"),
                        ("missing_rate", "--missing-rate"),
                        ("recombination_rate", "--recomb-rate"), ("mutation_rate", "--mut-rate"),
                        ("populations", "--populations"), ("population(s)", "--populations"),
                        ("recent_expansion", "--recent-expansion"),
                        ("maf", "--maf"), ("chrom", "--chrom")):
        if message.startswith(field + " ") or message.startswith("unknown " + field):
            return f"{flag}: {message}"
    return message


def run(args, log) -> int:
    from genosynth.io import write_cohort
    from genosynth.simulation import simulate_config

    config, spec = _check(args)
    prefix = args.out
    if os.path.isdir(prefix):
        raise InputError(f"--out {prefix} is a folder; give a file prefix such as {os.path.join(prefix, 'sim')}")
    seed = resolve_seed(args.seed, log)
    if args.threads is not None:
        log.record("threads", "1 (msprime is single-threaded)")

    names = config.chromosome_plan()
    t0 = time.perf_counter()
    cohort = simulate_config(config, phenotype=spec, seed=seed, trait_model=args.trait_model,
                             progress=not args.no_progress)
    sim = cohort.meta["simulation"]
    per_pop = ", ".join(f"{k} {v}" for k, v in sim["samples_per_population"].items())
    where = (f"{sim['total_length'] / 1e6:g} Mb" if len(names) == 1 else
             f"{len(names)} chromosomes ({sim['total_length'] / 1e6:g} Mb)")
    log.info(f"Simulated {cohort.n_samples} people ({per_pop}) over {where} under {sim['model']}")
    log.info(f"SNPs: {sim['segregating_sites']} segregating, {sim['snps_after_maf']} with MAF >= {args.maf:g}, "
             f"{cohort.n_variants} kept")
    if len(names) > 1:
        for c in sim["per_chromosome"]:
            log.info(f"  chromosome {c['chrom']}: {c['sequence_length'] / 1e6:g} Mb, {c['segregating_sites']} "
                     f"segregating, {c['snps_after_maf']} with MAF >= {args.maf:g}, {c['snps']} kept")
    if args.unphased or args.missing_rate > 0:
        log.info(f"Output: {'genotypes (unphased)' if args.unphased else 'haplotypes (phased)'}, "
                 f"{cohort.missing_rate():.4f} of calls missing")
    if cohort.n_variants == 0:
        raise InputError("no SNP passed the filters; lower --maf or simulate a longer region (--length-mb)")
    if "truth" in cohort.meta:
        t = cohort.meta["truth"]
        log.info(f"Phenotype: {t['n_cases']} cases, {t['n_controls']} controls; {len(t['causal'])} causal SNPs, "
                 f"h2 {t['heritability']:g} (realised {t['realised_h2']:.3f}), prevalence {t['prevalence']:g}")
    log.timing("Simulation time", time.perf_counter() - t0)

    written: list[str] = []
    try:
        written += write_cohort(cohort, prefix, args.format)
        written += _write_samples(cohort, f"{prefix}.samples.tsv")
        record = {"genosynth_version": versions(libraries=False)["genosynth"], "command": "simulate", **sim,
                  "provenance": provenance(command=log.argv, seed=seed)}
        written += _write_json(record, f"{prefix}.simulation.json")
        if "truth" in cohort.meta:
            written += _write_json(cohort.meta["truth"], f"{prefix}.truth.json")
    except BaseException:
        for path in written:  # all or nothing: no cohort without its sample table and truth
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        raise
    for path in written:
        log.info(f"Wrote {path}")
    return 0


def _write_json(obj: dict, path: str) -> list[str]:
    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2)
            fh.write("\n")
    return [path]


def _write_samples(cohort, path: str) -> list[str]:
    """``PREFIX.samples.tsv`` (sample, fid, pop, super_pop, sex, phenotype) via the I/O module when present."""
    try:
        from genosynth.io.samples import write_sample_table
    except ImportError:
        write_sample_table = None
    if write_sample_table is not None:
        return write_sample_table(cohort, path)
    s = cohort.samples
    sex = {1: "male", 2: "female"}
    pheno = s["phenotype"].to_numpy(dtype=float)
    with atomic_outputs([path]) as (tmp,):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("sample\tfid\tpop\tsuper_pop\tsex\tphenotype\n")
            for i in range(len(s)):
                ph = "NA" if pheno[i] != pheno[i] else ("case" if pheno[i] == 1 else "control")
                fh.write(f"{s['sample'].iat[i]}\t{s['fid'].iat[i]}\t{s['pop'].iat[i]}\t{s['super_pop'].iat[i]}\t"
                         f"{sex.get(int(s['sex'].iat[i]), 'unknown')}\t{ph}\n")
    return [path]
