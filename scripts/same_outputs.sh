#!/usr/bin/env bash
# Byte-compare what two checkouts of genosynth write for the same seeds (refactors must not change outputs).
#
# Usage: scripts/same_outputs.sh OLD_CHECKOUT NEW_CHECKOUT [WORKDIR]
#   e.g. git worktree add /tmp/old 6d66687 && scripts/same_outputs.sh /tmp/old . /tmp/same
# Runs simulate -> train (plain, phenotype) -> sample (VCF, bed, guided and plain) -> select on a
# simulated cohort, and train -> sample (VCF, hapt) on the 1000 Genomes 805-SNP data
# (../shared/data/1000g_805), with fixed seeds, in each checkout (PYTHONPATH=CHECKOUT/src); prints
# the sha256 of every checkpoint and cohort file and exits 1 if any differs. About 4 minutes a
# checkout on 2 cores. Logs and JSON sidecars (timings) are not compared.
set -euo pipefail
old=$(cd "$1" && pwd); new=$(cd "$2" && pwd); work=${3:-$(mktemp -d)}; mkdir -p "$work"
data=$(cd "$(dirname "$0")/../../shared/data/1000g_805" && pwd)
run() {  # run CHECKOUT OUTDIR
  local src=$1 o=$2
  rm -rf "$o"; mkdir -p "$o"
  g() { PYTHONPATH="$src/src" OMP_WAIT_POLICY=PASSIVE python -c \
        "import sys; from genosynth.cli import main; sys.exit(main(sys.argv[1:]))" "$@" >/dev/null 2>&1 \
        || { echo "failed in $src: genosynth $*" >&2; exit 1; }; }
  g simulate --out "$o/sim" --n 300 --length-mb 1 --max-snps 400 --seed 5 --causal 10 --h2 0.5 --prevalence 0.3 --format bed
  g train --bfile "$o/sim" --samples "$o/sim.samples.tsv" --size tiny --out "$o/simm" --seed 7 --no-progress
  g train --bfile "$o/sim" --samples "$o/sim.samples.tsv" --size tiny --pheno --out "$o/simp" --seed 7 --no-progress
  g sample --model "$o/simm.pt" --n 200 --out "$o/sims" --seed 9 --format vcf --no-progress
  g sample --model "$o/simm.pt" --n 200 --out "$o/simsb" --seed 9 --format bed --corr-guidance none --no-progress
  g sample --model "$o/simp.pt" --cases 50 --controls 50 --out "$o/simps" --seed 9 --format bed --no-progress
  g train --hapt "$data/haplotypes.hapt.gz" --legend "$data/snps.legend" --samples "$data/panel.tsv" \
    --label-column pop --size tiny --vae-epochs 3 --dit-epochs 5 --out "$o/m805" --seed 3 --no-progress
  g sample --model "$o/m805.pt" --n 300 --out "$o/s805" --seed 4 --format vcf --no-progress
  g sample --model "$o/m805.pt" --n 300 --out "$o/s805h" --seed 4 --format hapt --no-progress
  g select --bfile "$o/sim" --samples "$o/sim.samples.tsv" --k 50 --out "$o/sel" --seed 2
  (cd "$o" && for f in *; do case $f in *.log|*.json|*.html) ;; *) echo "$(sha256sum "$f" | cut -c1-16) $f";; esac; done)
}
run "$old" "$work/old" > "$work/old.txt"
run "$new" "$work/new" > "$work/new.txt"
if diff "$work/old.txt" "$work/new.txt"; then
  echo "identical: $(wc -l < "$work/new.txt") files"
else
  echo "outputs differ (left: $old, right: $new)"; exit 1
fi
