#!/usr/bin/env bash
# The scale cohorts of issue 17 (results: benchmarks/RESULTS.md, "Scale cohorts (issue 17)").
#
#   (a) chr1_100k:   1 chromosome of 97 Mb (104,795 SNPs with MAF >= 0.05, thinned evenly to 100,000), 3,000 people
#   (b) genome5x20k: 5 chromosomes x 20,000 SNPs (21 Mb each, thinned evenly), the same 3,000 people
#   (c) thin_unphased: 10 chromosomes x ~1,500 SNPs, 750 people, unphased, 5 % of calls missing
#
# (a), (b): the built-in out-of-Africa model (YRI / CEU / CHB, 1,000 each) with the recent expansion
# of Tennessen et al. (2012) (no cryptic relatives), simulated phased and written as PLINK bed (which
# drops phase; --format vcf keeps it), with PREFIX.samples.tsv (pop, super_pop) and
# PREFIX.simulation.json (per-chromosome lengths and SNP counts in "per_chromosome").
#
# Usage: benchmarks/make_scale_cohorts.sh [OUT_DIR]   (default /tmp/scale)
#   FORMAT  bed (default) or vcf (phased VCF.gz)
#   TIME    timing wrapper (default /usr/bin/time -v: peak RSS is "Maximum resident set size")
set -euo pipefail
OUT=${1:-/tmp/scale}
FORMAT=${FORMAT:-bed}
TIME=${TIME:-/usr/bin/time -v}
mkdir -p "$OUT"

uptime
# (a) one chromosome, ~100,000 SNPs
nice -n 5 $TIME genosynth simulate --n 3000 --length-mb 97 --max-snps 100000 --recent-expansion --no-phenotype --seed 17 \
    --format "$FORMAT" --out "$OUT/chr1_100k"

uptime
# (b) five chromosomes x 20,000 SNPs
nice -n 5 $TIME genosynth simulate --n 3000 --chromosomes 5 --length-mb 21 --snps-per-chrom 20000 \
    --recent-expansion --no-phenotype --seed 17 --format "$FORMAT" --out "$OUT/genome5x20k"

uptime
# (c) the thin-data shape of issue 21: unphased genotypes with 5 % missing calls, one command
nice -n 5 $TIME genosynth simulate --n 750 --chromosomes 10 --length-mb 1.5 --recent-expansion --unphased \
    --missing-rate 0.05 --seed 21 --format vcf --out "$OUT/thin_unphased"
uptime
