"""``genosynth select``: GWAS-guided SNP selection (association test, LD clumping, top K).

Writes ``PREFIX.snplist`` (selected ids, one per line, for ``plink2 --extract``),
``PREFIX.select.json`` (options, seed, what the selection spent under ``--epsilon``) and, only
when no ``--epsilon`` is given, ``PREFIX.gwas.tsv`` (the association table: a private statistic
of the cohort, so it is never written under differential privacy).
"""

from __future__ import annotations

import json

from genosynth.cli.common import (add_common_arguments, add_input_arguments, load_input, reading, resolve_seed,
                                   secret_seed)
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.provenance import provenance, versions

HELP = "GWAS-guided SNP selection: logistic test, LD clumping, top-K SNPs (differentially private with --epsilon)"


def add_arguments(parser) -> None:
    add_input_arguments(parser)
    g = parser.add_argument_group("phenotype (one of)")
    g.add_argument("--pheno-column", metavar="NAME", default="phenotype",
                   help="sample-table column with the 0/1 (or PLINK 1/2) trait (default: phenotype)")
    g.add_argument("--case-pop", metavar="POP", nargs="+",
                   help="cases are these populations (pop or super_pop labels, e.g. YRI); needs --control-pop")
    g.add_argument("--control-pop", metavar="POP", nargs="+",
                   help="controls are these populations (e.g. CEU); other samples are dropped")
    s = parser.add_argument_group("selection")
    s.add_argument("--k", type=int, default=1024, help="number of SNPs to keep (default 1024)")
    s.add_argument("--model", choices=("additive", "dominant"), default="additive",
                   help="genotype coding of the test (default additive)")
    s.add_argument("--pcs", type=int, default=0, help="top genotype principal components as covariates (default 0)")
    s.add_argument("--clump-r2", type=float, default=0.2, help="LD clumping r^2 threshold (default 0.2)")
    s.add_argument("--clump-kb", type=float, default=250.0, help="LD clumping window in kb (default 250)")
    s.add_argument("--no-clump", action="store_true", help="do not clump: take the top K SNPs by association")
    s.add_argument("--p-threshold", type=float, default=None,
                   help="only SNPs with p <= this are candidates (not with --epsilon)")
    s.add_argument("--ld-bfile", metavar="PREFIX",
                   help="public reference (PLINK 1) whose LD is used for clumping; needed to clump under --epsilon")
    s.add_argument("--ld-vcf", metavar="FILE", help="public reference (VCF) for LD clumping, as --ld-bfile")
    p = parser.add_argument_group("differential privacy")
    p.add_argument("--epsilon", type=float, default=None,
                   help="select with k exponential mechanisms spending this epsilon (no GWAS table is written)")
    p.add_argument("--delta", type=float, default=0.0,
                   help="DP delta (> 0 allows zCDP accounting, much less noise for large --k; default 0)")
    p.add_argument("--strata", metavar="COLUMN", default=None,
                   help="under --epsilon, stratify the DP score by this sample-table column (e.g. super_pop)")
    add_common_arguments(parser)


def run(args, log) -> int:
    from genosynth.selection import population_phenotype, select_snps

    if args.epsilon is None:
        seed = resolve_seed(args.seed, log)
    else:  # the DP noise must be unpredictable: a secret seed, written nowhere
        seed = secret_seed(args.seed, log)
    cohort = load_input(args, log)
    pheno = args.pheno_column
    if args.case_pop or args.control_pop:
        if not (args.case_pop and args.control_pop):
            raise InputError("give both --case-pop and --control-pop (e.g. --case-pop YRI --control-pop CEU)")
        cohort = population_phenotype(cohort, args.case_pop, args.control_pop)
        pheno = "phenotype"
        log.info(f"Phenotype from populations: {int(cohort.samples['phenotype'].sum())} cases "
                 f"({' '.join(args.case_pop)}), {int((cohort.samples['phenotype'] == 0).sum())} controls "
                 f"({' '.join(args.control_pop)})")
    ld_reference = None
    if args.ld_bfile or args.ld_vcf:
        from genosynth.io import read_cohort

        with reading(args.ld_bfile or args.ld_vcf, "--ld-bfile" if args.ld_bfile else "--ld-vcf"):
            ld_reference = read_cohort(bfile=args.ld_bfile, vcf=args.ld_vcf)
        log.info(f"LD reference: {ld_reference.n_samples} samples x {ld_reference.n_variants} variants")
    sel = select_snps(
        cohort, k=args.k, model=args.model, pcs=args.pcs,
        clump_r2=None if args.no_clump else args.clump_r2, clump_kb=args.clump_kb,
        p_threshold=args.p_threshold, epsilon=args.epsilon, delta=args.delta, strata=args.strata,
        ld_reference=ld_reference, phenotype=pheno, seed=seed,
    )
    for note in sel.notes:
        log.warn(note)
    out = args.out
    paths = [f"{out}.snplist", f"{out}.select.json"] + ([f"{out}.gwas.tsv"] if sel.gwas is not None else [])
    record = {
        "genosynth_version": versions(libraries=False)["genosynth"],
        "provenance": provenance(command=log.argv),
        "n_samples": cohort.n_samples,
        "n_variants": cohort.n_variants,
        "n_selected": len(sel.ids),
        "config": sel.config,
        "privacy": sel.privacy,
        "notes": sel.notes,
    }
    with atomic_outputs(paths) as tmps:
        with open(tmps[0], "w", encoding="utf-8") as fh:
            fh.writelines(f"{i}\n" for i in sel.ids)
        with open(tmps[1], "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, default=str)
        if sel.gwas is not None:
            sel.gwas.to_csv(tmps[2], sep="\t", index=False, float_format="%.6g", na_rep="NA")
    log.info(f"Selected {len(sel.ids)} of {cohort.n_variants} variants ({sel.config['seconds']:.2f} s)")
    if sel.privacy:
        pv = sel.privacy
        log.info(f"Differential privacy: ({pv['epsilon']:g}, {pv['delta']:g})-DP selection, {pv['steps']} exponential "
                 f"mechanisms of epsilon {pv['epsilon_step']:.4g} ({pv['accounting']} accounting, "
                 f"rho = {pv['rho']:.4g}); charge this to the run's privacy budget")
        log.info(f"GWAS table not written: it is a private statistic of the cohort (--epsilon given); "
                 f"wrote {out}.snplist and {out}.select.json")
    else:
        log.info("No --epsilon: the selection and the GWAS table are NOT differentially private; "
                 "do not share them outside the data's access controls")
        log.info(f"Wrote {out}.snplist, {out}.gwas.tsv and {out}.select.json")
    return 0
