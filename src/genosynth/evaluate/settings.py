"""The one typed configuration of the evaluation suite."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class EvalConfig:
    """Options of :func:`genosynth.evaluate.evaluate`; every field has a default.

    The resolved config is written into ``results["config"]`` (and so into ``PREFIX.json``).
    """

    # --- fidelity
    n_pcs: int = 10                      # PCs fitted on real train for projection and energy distance
    max_energy_samples: int = 2000       # people per set used in the energy distance (subsampled)
    ld_window_bp: int = 1_000_000        # "near" SNP pairs: same chromosome, at most this far apart
    max_ld_pairs: int = 200_000          # cap on near pairs and on random all-genome pairs (subsampled)
    ld_decay_edges_bp: tuple[float, ...] = (0, 1e3, 1e4, 1e5, 1e6, 1e7, 3e8)  # LD decay distance bins
    ld_strength_min_r2: float = 0.02     # LD-strength bins need real r^2 (above chance) of at least this
    ld_strength_min_pairs: int = 50      # ... and at least this many SNP pairs
    match_holdout_size: bool = True      # fidelity of a synthetic set on a subsample of the holdout's size per group
    min_group_size: int = 20             # groups smaller than this in any set are skipped in per-group metrics
    ld_heatmap_snps: int = 60            # SNPs in the LD heatmap window (the densest run on one chromosome)
    max_distance_samples: int = 600      # people per set for the pairwise distance distributions
    # --- population structure (Table I)
    classifier_pcs: int = 20             # PCA features of the classifiers (fitted on the training set)
    max_classifier_train: int = 5000     # training rows per classifier (subsampled, stratified)
    rf_trees: int = 100                  # random forest size (min_samples_leaf=2)
    classifiers: tuple[str, ...] = ("lr", "svm", "rf")
    # --- GWAS (Fig. 2)
    gwas_groups: tuple[str, str] | None = None  # (case, control) labels of label_column; None = two largest
    gwas_phenotype: str | None = None    # a 0/1 sample column used as case/control instead of two groups
    gwas_top_fractions: tuple[float, ...] = (0.1, 0.2, 0.3)  # overlap of the top x % lowest p-values
    gwas_repeats: int = 5                # matched-size subsamples averaged
    # --- privacy
    mia_repeats: int = 10                # membership-inference repeats (balanced by subsampling train)
    aats_repeats: int = 3                # AATS repeats (only when a set is subsampled)
    max_privacy_samples: int = 3000      # cap on people per set in AATS
    chunk_rows: int = 1024               # rows per block in nearest-neighbour distances
    # --- run
    threads: int | None = None           # CPU threads for the random forest (None: all)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "EvalConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            from genosynth.errors import InputError

            raise InputError(f"unknown evaluation option(s) {unknown}; known options: {sorted(known)}")
        out = cls(**values)
        for name in ("ld_decay_edges_bp", "classifiers", "gwas_top_fractions"):
            setattr(out, name, tuple(getattr(out, name)))
        if out.gwas_groups is not None:
            out.gwas_groups = tuple(out.gwas_groups)
        return out
