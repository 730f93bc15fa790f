"""``evaluate(real, holdout, synthetic)``: every figure of the report, nested by section.

The real holdout is evaluated exactly like a synthetic set; its figures are the ceiling each
synthetic set is judged against (a perfect generator is as good as fresh real people, no better).
Most metrics work on genotype counts (0/1/2); identical haplotypes are counted too when both sets
are phased.
"""

from __future__ import annotations

import time
import warnings
import zlib
from contextlib import contextmanager

import numpy as np

from genosynth.cohort import Cohort
from genosynth.errors import InputError
from genosynth.evaluate import fidelity as fid
from genosynth.evaluate import replication as gw
from genosynth.evaluate import attacks as pv
from genosynth.evaluate import structure as st
from genosynth.stats.frequency import allele_frequencies, dosage
from genosynth.stats.ld import pair_correlations, r2_matrix
from genosynth.evaluate.settings import EvalConfig
from genosynth.evaluate.lights import traffic_lights, verdict
from genosynth.runtime import progress_bar

HOLDOUT = "holdout"
TEXT_SOURCES = ("tag", "fid")  # sample columns that may carry a synthetic person's label


# ---------------------------------------------------------------------------------- input checks
def check_same_variants(real: Cohort, others: dict[str, Cohort]) -> None:
    """Raise :class:`InputError` unless every cohort has real's variants (ids, alleles, order)."""
    ref = real.variants
    for name, c in others.items():
        v = c.variants
        if len(v) != len(ref):
            raise InputError(
                f"{name} has {len(v)} variants but real train has {len(ref)}; the sets must share the same "
                "variants in the same order: restrict them with 'genosynth convert --extract' (or plink2 --extract) "
                "to the variant list of real train"
            )
        for col in ("id", "ref", "alt"):
            a = ref[col].astype(str).to_numpy()
            b = v[col].astype(str).to_numpy()
            bad = np.flatnonzero(a != b)
            if bad.size:
                k = int(bad[0])
                what = "variant ids or order" if col == "id" else f"{col.upper()} alleles"
                raise InputError(
                    f"{name} differs from real train in {what} at {bad.size} variants (first: column {k + 1}, "
                    f"{a[k]!r} vs {b[k]!r}); align the files with 'genosynth convert --extract' (same variant list, "
                    "same order) and make REF/ALT agree (plink2 --ref-allele)"
                )


def _as_sets(synthetic) -> dict[str, Cohort]:
    if isinstance(synthetic, Cohort):
        return {"synthetic": synthetic}
    if isinstance(synthetic, dict) and synthetic and all(isinstance(c, Cohort) for c in synthetic.values()):
        if HOLDOUT in synthetic:
            raise InputError(f"the name {HOLDOUT!r} is reserved for the real holdout; rename that synthetic set")
        return {str(k): v for k, v in synthetic.items()}
    raise InputError("synthetic must be a Cohort or a non-empty dict name -> Cohort")


def _rng(seed: int, name: str) -> np.random.Generator:
    """An independent stream per section, so adding a section does not change the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


# ---------------------------------------------------------------------------------- labels
def _column_labels(c: Cohort, column: str) -> np.ndarray:
    if column not in c.samples.columns:
        return np.full(c.n_samples, "", dtype=object)
    s = c.samples[column]
    if column == "phenotype" or s.dtype.kind == "f":
        v = s.to_numpy(dtype=float)
        return np.array(["" if not np.isfinite(x) else str(int(x)) if float(x).is_integer() else str(x)
                         for x in v], dtype=object)
    return c.labels(column).astype(object)


def resolve_labels(train: Cohort, sets: dict[str, Cohort], columns: list[str], *, config: EvalConfig,
                   g: dict[str, np.ndarray], features: dict, seed: int) -> tuple[dict, dict, list[str]]:
    """Labels of every set for each column; missing ones are taken from ``tag``/``fid`` or pseudo-labelled.

    Returns
    -------
    labels : {set: {column: str array (n_people,)}} ("" = unknown), sets include ``train``
    sources : {set: {column: {"source": given|tag|fid|pseudo|mixed|none, "n_pseudo": int}}}
    notes : sentences for the report
    """
    labels, sources, notes, usable = _given_labels(train, sets, columns)
    for col in usable:  # pseudo-label what is still unknown, one classifier per column trained on real train
        notes.extend(_pseudo_labels(col, labels, sources, sets, features["train"], g, config=config, seed=seed))
    return labels, sources, notes


def _given_labels(train: Cohort, sets: dict[str, Cohort], columns: list[str]):
    """Labels given in the sample tables (or in ``tag``/``fid``); (labels, sources, notes, usable columns)."""
    labels: dict = {"train": {}}
    sources: dict = {"train": {}}
    notes: list[str] = []
    usable = []
    for col in columns:
        y = _column_labels(train, col)
        if (y != "").sum() < 2 or len(np.unique(y[y != ""])) < 2:
            notes.append(f"real train has no usable {col!r} labels: figures that need them are skipped "
                         "(give --samples with that column)")
            continue
        usable.append(col)
        labels["train"][col] = y
        sources["train"][col] = {"source": "given", "n_pseudo": 0}
    for name, c in sets.items():
        labels[name], sources[name] = {}, {}
        for col in usable:
            known = set(labels["train"][col][labels["train"][col] != ""])
            labels[name][col], source = _set_labels(c, col, known)
            sources[name][col] = {"source": source, "n_pseudo": 0}
    return labels, sources, notes, usable


def _set_labels(c: Cohort, col: str, known: set) -> tuple[np.ndarray, str]:
    """``col`` labels of one set and their source: given, else a ``tag``/``fid`` column whose values are
    (>= 95 %) labels of real train, else none (all "")."""
    y = _column_labels(c, col)
    if not (y == "").all():
        return y, "given"
    for alt in TEXT_SOURCES:
        if alt in c.samples.columns:
            cand = c.labels(alt).astype(object)
            inside = np.isin(cand, list(known))
            if (cand != "").any() and inside.mean() >= 0.95:
                return np.where(inside, cand, "").astype(object), alt
    return y, "none"


def _pseudo_labels(col: str, labels: dict, sources: dict, sets, feats: st.PCAFeatures, g, *, config: EvalConfig,
                   seed: int) -> list[str]:
    """Fill the unknown ``col`` labels of every set with a PCA + logistic-regression classifier trained on
    real train (in place in ``labels``/``sources``); return the notes saying so."""
    todo = {n: labels[n][col] == "" for n in sets if (labels[n][col] == "").any()}
    if not todo:
        return []
    ytr = labels["train"][col][feats.rows]
    clf = st.make_classifier("lr", rf_trees=config.rf_trees, seed=seed, threads=config.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(feats.train_scores[ytr != ""], ytr[ytr != ""])
    notes = []
    for name, miss in todo.items():
        pred = clf.predict(feats.transform(g[name][miss]))
        y = labels[name][col].copy()
        y[miss] = pred
        labels[name][col] = y
        src = sources[name][col]
        src["n_pseudo"] = int(miss.sum())
        src["source"] = "pseudo" if miss.all() else "mixed"
        what = "all" if miss.all() else f"{int(miss.sum())} of {len(miss)}"
        notes.append(f"{name}: {what} {col!r} labels are pseudo-labels from a PCA + logistic-regression "
                     f"classifier trained on real train; label-dependent figures of {name} ({col}) partly "
                     "reflect that classifier")
    return notes


# ---------------------------------------------------------------------------------- sections
def _densest_window(variants, n_snps: int) -> np.ndarray:
    chrom = variants["chrom"].astype(str).to_numpy()
    pos = variants["pos"].to_numpy(dtype=np.int64)
    best, best_span = None, None
    for c in np.unique(chrom):
        idx = np.flatnonzero(chrom == c)
        idx = idx[np.argsort(pos[idx], kind="stable")]
        k = min(n_snps, len(idx))
        if k < 2:
            continue
        spans = pos[idx[k - 1:]] - pos[idx[:len(idx) - k + 1]]
        s = int(np.argmin(spans))
        key = (-k, int(spans[s]))
        if best is None or key < best_span:
            best, best_span = idx[s:s + k], key
    return best if best is not None else np.arange(min(n_snps, len(variants)))


def _groups(y_train: np.ndarray, y_other: np.ndarray, min_size: int) -> list[str]:
    out = []
    for lab in np.unique(y_train[y_train != ""]):
        if (y_train == lab).sum() >= min_size and (y_other == lab).sum() >= min_size:
            out.append(str(lab))
    return out


MAX_PLOT_PAIRS = 5000  # SNP pairs drawn in the LD scatter plots (per set)


def _pair_points(r_ref: np.ndarray, r_other: np.ndarray, *, cap: int) -> tuple[list, list]:
    """(train r, set r) of the first ``cap`` pairs defined in train, rounded, for a scatter plot."""
    ok = np.flatnonzero(np.isfinite(r_ref))[:cap]
    return (np.round(r_ref[ok], 3).tolist(), np.round(np.nan_to_num(r_other[ok]), 3).tolist())


def _cached(cache: dict, key, compute):
    """``cache[key]``, computing it on first use (real-train figures shared by every set)."""
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def matched_rows(n_set: int, y_set: np.ndarray | None, y_holdout: np.ndarray | None, n_holdout: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Rows of a set drawn to the holdout's size, group by group, so its figures compare with the ceiling.

    Parameters
    ----------
    n_set, n_holdout : people in the set / in the real holdout.
    y_set, y_holdout : str arrays (n_set,), (n_holdout,) of labels ("" unknown), or None (no labels):
        then ``n_holdout`` rows are drawn at random.
    rng : the generator of the draw (seeded by the caller).

    Returns
    -------
    rows : int64, sorted row indices into the set (every row when fewer than 4 could be drawn).
    info : ``{"matched", "n_full", "n_used", "n_holdout", "column", "per_group": {label: {"holdout", "used"}}}``;
        ``matched`` is False when the set lacks people of some group (then it keeps all it has of it).
    """
    info: dict = {"n_full": int(n_set), "n_holdout": int(n_holdout), "per_group": {}}
    if y_set is None or y_holdout is None:
        k = min(n_set, n_holdout)
        rows = np.sort(rng.choice(n_set, size=k, replace=False)).astype(np.int64)
        info["matched"] = bool(n_set >= n_holdout)
    else:
        parts, ok = [], True
        for lab in np.unique(y_holdout.astype(str)):
            want = int((y_holdout == lab).sum())
            have = np.flatnonzero(y_set == lab)
            k = min(want, len(have))
            ok = ok and k == want
            parts.append(rng.choice(have, size=k, replace=False))
            info["per_group"][lab or "(none)"] = {"holdout": want, "used": int(k)}
        rows = np.sort(np.concatenate(parts)).astype(np.int64)
        info["matched"] = bool(ok)
    if len(rows) < 4:
        rows, info["matched"] = np.arange(n_set, dtype=np.int64), False
    info["n_used"] = int(len(rows))
    return rows, info


def _fidelity_section(names, g, labels, label_column, pairs, cache, scores, fill, config, seed):
    """Fidelity of every set; a synthetic set is first subsampled to the holdout's size per label group
    (``config.match_holdout_size``), so its figures and the ceiling rest on as many people.
    Returns (fidelity by set, plot data by set); ``fidelity[set]["matching"]`` says how it was matched."""
    fidelity, plot_sets = {}, {}
    y_hold = labels[HOLDOUT].get(label_column)
    for name in names:
        rows, info = None, None
        if name != HOLDOUT and config.match_holdout_size:
            rows, info = matched_rows(len(g[name]), labels[name].get(label_column), y_hold, len(g[HOLDOUT]),
                                      _rng(seed, "match-" + name))
        elif name != HOLDOUT:
            info = {"matched": len(g[name]) == len(g[HOLDOUT]), "n_full": len(g[name]), "n_used": len(g[name]),
                    "n_holdout": len(g[HOLDOUT]), "per_group": {}}
        g_m, labels_m, scores_m = g, labels, scores
        if rows is not None:  # the set's own entries replaced by its matched rows
            g_m = {**g, name: g[name][rows]}
            labels_m = {**labels, name: {c: y[rows] for c, y in labels[name].items()}}
            scores_m = {**scores, name: scores[name][rows]}
        fidelity[name], plot_sets[name] = _fidelity(name, g_m, labels_m, label_column, pairs, cache, scores_m, fill,
                                                    config, seed)
        if info is not None:
            info["column"] = label_column if info["per_group"] else None
            fidelity[name]["matching"] = info
    return fidelity, plot_sets


def _fidelity(name, g, labels, label_column, pairs, cache, scores, fill, config, seed):
    """Fidelity figures of set ``name`` against real train, and its plot data."""
    rng = _rng(seed, "fidelity-" + name)
    gt, go = g["train"], g[name]
    out: dict = {}
    out["allele_frequency"], af_o = _fidelity_af(gt, go, labels["train"], labels[name], cache, config)
    y_train = labels["train"].get(label_column)
    out["ld"], plot = _fidelity_ld(gt, go, y_train, labels[name].get(label_column), pairs, cache, fill, config,
                                   label_column)
    plot["af"] = af_o
    hi = cache["heatmap_idx"]
    plot["ld_heatmap"] = r2_matrix(go[:, hi], fill[hi]).round(4)
    out["pca"] = _fidelity_pca(scores["train"], scores[name], config, rng)
    out["heterozygosity"], plot["het_hist"] = _fidelity_heterozygosity(go, cache)
    out["pairwise_distance"], hists = _fidelity_distances(go, cache, fill, config, rng)
    plot.update(hists)
    return out, plot


def _fidelity_af(gt, go, y_train: dict, y_other: dict, cache, config) -> tuple[dict, np.ndarray]:
    """Allele frequencies of one set against real train, overall and per label group; (section, set AF)."""
    af_o = allele_frequencies(go, missing="skip")
    section = {"overall": fid.allele_frequency_metrics(cache["af_train"], af_o), "per_group": {}}
    for col in y_train:
        if col == config.gwas_phenotype:
            continue
        yt, yo = y_train[col], y_other[col]
        per = {}
        for lab in _groups(yt, yo, config.min_group_size):
            af_t = _cached(cache, ("af", col, lab), lambda: allele_frequencies(gt[yt == lab], missing="skip"))
            m = fid.allele_frequency_metrics(af_t, allele_frequencies(go[yo == lab], missing="skip"))
            m["n_train"], m["n"] = int((yt == lab).sum()), int((yo == lab).sum())
            per[lab] = m
        section["per_group"][col] = per
    return section, af_o


def _fidelity_ld(gt, go, yt, yo, pairs, cache, fill, config, label_column) -> tuple[dict, dict]:
    """LD of one set against real train: near and random pairs pooled, near pairs within groups, decay
    and LD strength (r^2 of the set over r^2 of real train by distance bin).

    ``yt``/``yo`` are the ``label_column`` labels of real train / the set (``yt`` None: no groups).
    Returns (section, plot points).
    """
    ld: dict = {}
    plot: dict = {}
    for key in ("near", "all"):
        i, j = pairs[key]
        r_t = _cached(cache, ("r", key), lambda: pair_correlations(gt, i, j, fill=fill))
        r_o = pair_correlations(go, i, j, fill=fill)
        ld[key] = fid.compare_pair_r(r_t, r_o)
        if key == "near":
            plot["ld_pairs_near"] = _pair_points(r_t, r_o, cap=MAX_PLOT_PAIRS)
    ld["near"]["n_pairs_total"] = pairs["near_total"]
    ld["window_bp"] = config.ld_window_bp
    di, dj = pairs["decay"]
    edges = np.asarray(config.ld_decay_edges_bp, dtype=float)
    ld["decay_pooled"] = fid.ld_decay(pair_correlations(go, di, dj, fill=fill), pairs["decay_dist"], edges)
    ld["near_within"], plot["ld_pairs_within"], ld["decay_within"], null_within = _fidelity_ld_within(
        gt, go, yt, yo, pairs, cache, fill, config, label_column)
    train = _cached(cache, "decay_train", lambda: _train_decays(gt, yt, pairs, fill, config))
    if train["within"] is not None and ld["near_within"].get("groups"):
        basis, decay, null = "within", ld["decay_within"], null_within
    else:
        basis, decay = "pooled", ld["decay_pooled"]
        null = [None if v is None else 1.0 / max(len(go) - 1, 1) for v in decay]
    ld["strength"] = {**fid.ld_strength(decay, null, *train[basis], _pairs_per_bin(pairs, edges),
                                        min_r2=config.ld_strength_min_r2, min_pairs=config.ld_strength_min_pairs),
                      "basis": basis}
    return ld, plot


def _pairs_per_bin(pairs: dict, edges: np.ndarray) -> list[int]:
    """SNP pairs of the LD-decay set in each distance bin ``[edges[k], edges[k+1])``."""
    d = pairs["decay_dist"]
    return [int(((d >= lo) & (d < hi)).sum()) for lo, hi in zip(edges[:-1], edges[1:])]


def _fidelity_ld_within(gt, go, yt, yo, pairs, cache, fill, config, label_column):
    """Near-pair LD within each label group (free of the LD that population structure adds) and the
    group-size-weighted LD decay of the set; (section, plot points (train r, set r), decay per bin,
    chance r^2 per bin (``1/(n-1)`` of each group, weighted alike))."""
    edges = np.asarray(config.ld_decay_edges_bp, dtype=float)
    within: dict = {"per_group": {}}
    points: tuple[list, list] = ([], [])
    dec_w, dec_n = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    nul_w, nul_n = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    if yt is None:
        within["r"] = float("nan")
        return within, points, _mean_decay(dec_w, dec_n), _mean_decay(nul_w, nul_n)
    (i, j), (di, dj) = pairs["near"], pairs["decay"]
    weights, values = [], []
    for lab in _groups(yt, yo, config.min_group_size):
        r_t = _cached(cache, ("rw", lab), lambda: pair_correlations(gt[yt == lab], i, j, fill=fill))
        r_o = pair_correlations(go[yo == lab], i, j, fill=fill)
        cmp_ = fid.compare_pair_r(r_t, r_o)
        for side, pts in zip(points, _pair_points(r_t, r_o, cap=MAX_PLOT_PAIRS // 5)):
            side.extend(pts)
        cmp_["n_train"], cmp_["n"] = int((yt == lab).sum()), int((yo == lab).sum())
        within["per_group"][lab] = cmp_
        if np.isfinite(cmp_["r"]) and cmp_["n_pairs"] >= 3:
            weights.append(cmp_["n_train"])
            values.append(cmp_["r"])
        dec = fid.ld_decay(pair_correlations(go[yo == lab], di, dj, fill=fill), pairs["decay_dist"], edges)
        _add_decay(dec_w, dec_n, dec, cmp_["n_train"])
        _add_decay(nul_w, nul_n, [None if v is None else 1.0 / max(cmp_["n"] - 1, 1) for v in dec], cmp_["n_train"])
    within["r"] = float(np.average(values, weights=weights)) if values else float("nan")
    within["groups"] = len(values)
    within["column"] = label_column
    return within, points, _mean_decay(dec_w, dec_n), _mean_decay(nul_w, nul_n)


def _add_decay(total: np.ndarray, weight_sum: np.ndarray, decay: list, weight) -> None:
    """Add one group's LD decay curve, weighted by its size, to running sums (empty bins skipped)."""
    for b, v in enumerate(decay):
        if v is not None:
            total[b] += v * weight
            weight_sum[b] += weight


def _mean_decay(total: np.ndarray, weight_sum: np.ndarray) -> list[float | None]:
    """Weighted mean r^2 per distance bin from :func:`_add_decay` sums; None for empty bins."""
    return [float(w / n) if n else None for w, n in zip(total, weight_sum)]


def _fidelity_pca(s_train: np.ndarray, s_other: np.ndarray, config, rng) -> dict:
    """Energy distances between the real-train PC scores of real train and of one set."""
    out = {
        "n_pcs": int(s_other.shape[1]),
        "energy_distance": fid.energy_distance(s_train, s_other, max_samples=config.max_energy_samples, rng=rng),
        "energy_coefficient": None,
        "energy_distance_pc12": fid.energy_distance(s_train[:, :2], s_other[:, :2],
                                                    max_samples=config.max_energy_samples, rng=rng),
        "mean_pc_shift": np.abs(s_train.mean(0) - s_other.mean(0)).round(4).tolist(),
    }
    # energy coefficient E / (2 E|X-Y|) in [0, 1]: scale-free, so it can carry a traffic light
    out["energy_coefficient"] = fid.energy_coefficient(s_train, s_other, max_samples=config.max_energy_samples,
                                                       rng=rng)
    return out


def _fidelity_heterozygosity(go, cache) -> tuple[dict, list[int]]:
    """Per-person heterozygosity of one set against real train; (section, histogram)."""
    het_o = fid.heterozygosity(go)
    section = fid.distribution_metrics(cache["het_train"], het_o)
    section["mean_abs_diff"] = abs(section["mean_diff"])
    return section, fid.histogram(het_o, cache["het_edges"])


def _fidelity_distances(go, cache, fill, config, rng) -> tuple[dict, dict]:
    """Pairwise genotype distances within one set and to real train, on subsamples; (section, histograms)."""
    cap = config.max_distance_samples
    xo = dosage(go[rng.choice(len(go), size=min(cap, len(go)), replace=False)], fill)
    d_oo = fid.pairwise_distance_sample(xo)
    d_to = fid.pairwise_distance_sample(cache["dist_sample_train"], xo)
    section = {"within": fid.distribution_metrics(cache["dist_within_train"], d_oo),
               "between_mean": float(d_to.mean()), "n_sampled": int(len(xo))}
    de = cache["dist_edges"]
    return section, {"dist_within_hist": fid.histogram(d_oo, de), "dist_between_hist": fid.histogram(d_to, de)}


def _features(g: np.ndarray, config: EvalConfig, fill: np.ndarray, seed: int, name: str) -> st.PCAFeatures:
    """PCA features fitted on (at most ``max_classifier_train`` random rows of) one training set."""
    rows = np.arange(len(g))
    if len(g) > config.max_classifier_train:
        rows = np.sort(_rng(seed, "features-" + name).choice(len(g), config.max_classifier_train, replace=False))
    f = st.PCAFeatures(g[rows], fill=fill, n_pcs=config.classifier_pcs, seed=seed)
    f.rows = rows
    f.train_scores = f.transform(g[rows])
    return f


def _structure(feats: st.PCAFeatures, y_train: dict, g_test: np.ndarray, y_test: dict, config, seed):
    """Table I rows of one training set: accuracy on the real holdout per label column."""
    f_test = feats.transform(g_test)
    out = {}
    for col, y in y_train.items():
        if col == config.gwas_phenotype:
            continue
        out[col] = st.accuracy_table(feats.train_scores, y[feats.rows], f_test, y_test[col],
                                     kinds=tuple(config.classifiers), rf_trees=config.rf_trees, seed=seed,
                                     threads=config.threads)
    return out


def _gwas_design(labels, label_column, config):
    if config.gwas_phenotype:
        col = config.gwas_phenotype
        if col not in labels["train"]:
            return None, f"GWAS skipped: real train has no 0/1 {col!r} column"
        return {"column": col, "case": "1", "control": "0", "mode": "phenotype"}, None
    if label_column not in labels["train"]:
        return None, f"GWAS skipped: no {label_column!r} labels in real train"
    y = labels["train"][label_column]
    if config.gwas_groups:
        case, control = map(str, config.gwas_groups)
        for lab in (case, control):
            if not (y == lab).any():
                raise InputError(f"GWAS group {lab!r} is not a {label_column} label of real train "
                                 f"(labels: {sorted(set(y) - {''})}); fix --gwas-groups")
    else:
        vals, counts = np.unique(y[y != ""], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        case, control = str(vals[order[0]]), str(vals[order[1]])
    return {"column": label_column, "case": case, "control": control, "mode": "groups"}, None


def _privacy_block(x_train, x_other_nonmember, x_syn, config, rng):
    return pv.privacy_metrics(x_train, x_other_nonmember, x_syn, mia_repeats=config.mia_repeats,
                              aats_repeats=config.aats_repeats, max_samples=config.max_privacy_samples,
                              chunk=config.chunk_rows, rng=rng)


@contextmanager
def _timed(timings: dict[str, float], key: str, bar=None):
    """Record the seconds the ``with`` block took as ``timings[key]`` (and move ``bar`` one section)."""
    if bar is not None:
        bar.set_postfix_str(key, refresh=True)
    t = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - t
    if bar is not None:
        bar.update(1)


def _check_set_sizes(real: Cohort, holdout: Cohort, syn: dict[str, Cohort]) -> None:
    for n_, c in (("real train", real), ("holdout", holdout), *syn.items()):
        if c.n_samples < 4:
            raise InputError(f"{n_} has {c.n_samples} people; the evaluation needs at least 4 per set")


def _genotypes_and_fill(real: Cohort, holdout: Cohort, syn: dict[str, Cohort]):
    """Genotypes of every set (int8, (n_people, n_variants) each), real-train ALT frequencies over
    called genotypes, and the dosage of missing calls (twice that frequency, 0 where none is called)."""
    g = {"train": real.genotypes(), HOLDOUT: holdout.genotypes(), **{k: c.genotypes() for k, c in syn.items()}}
    af_train = allele_frequencies(g["train"], missing="skip")
    return g, af_train, np.where(np.isfinite(af_train), 2 * af_train, 0.0)


def _label_columns(real: Cohort, label_column: str, config: EvalConfig) -> list[str]:
    """The label columns evaluated: ``label_column``, ``pop`` when real train has it, the GWAS phenotype."""
    columns = [label_column]
    if label_column != "pop" and "pop" in real.samples.columns and (real.labels("pop") != "").any():
        columns.append("pop")
    if config.gwas_phenotype:
        columns.append(config.gwas_phenotype)
    return columns


def _ld_pairs(variants, config: EvalConfig, rng: np.random.Generator) -> dict:
    """The SNP pairs every set is measured on: near pairs, random genome-wide pairs, decay pairs."""
    ni, nj, ntot = fid.near_pairs(variants, window_bp=config.ld_window_bp, max_pairs=config.max_ld_pairs, rng=rng)
    ai, aj = fid.random_pairs(len(variants), max_pairs=config.max_ld_pairs, rng=rng)
    chrom = variants["chrom"].astype(str).to_numpy()
    pos = variants["pos"].to_numpy(dtype=np.int64)
    n_dec = min(config.max_ld_pairs, 50_000)
    si, sj = fid.random_pairs(len(variants), max_pairs=n_dec, rng=rng, chrom=chrom, same_chrom=True)
    if len(ni) > n_dec:
        keep = rng.choice(len(ni), n_dec, replace=False)
        di, dj = np.r_[ni[keep], si], np.r_[nj[keep], sj]
    else:
        di, dj = np.r_[ni, si], np.r_[nj, sj]
    return {"near": (ni, nj), "near_total": ntot, "all": (ai, aj), "decay": (di, dj),
            "decay_dist": np.abs(pos[di] - pos[dj]).astype(float)}


def _train_cache(variants, g: dict[str, np.ndarray], af_train, fill, config: EvalConfig, seed: int) -> dict:
    """Real-train figures shared by every set, and the histogram edges common to all sets."""
    rng_d = _rng(seed, "distances")
    gt = g["train"]
    xs_t = dosage(gt[rng_d.choice(len(gt), size=min(config.max_distance_samples, len(gt)), replace=False)], fill)
    d_tt = fid.pairwise_distance_sample(xs_t)
    het_max = float(np.nanmax([fid.heterozygosity(v).max() for v in g.values()]))
    return {"af_train": af_train, "het_train": fid.heterozygosity(gt), "dist_sample_train": xs_t,
            "dist_within_train": d_tt, "heatmap_idx": _densest_window(variants, config.ld_heatmap_snps),
            "het_edges": np.linspace(0, max(0.05, het_max * 1.05), 41),
            "dist_edges": np.linspace(0, float(d_tt.max()) * 1.6 + 1e-9, 61)}


def _structure_section(features, g, labels, syn, fill, config, seed) -> dict:
    """Table I: classifiers trained on real train (TRTR) or on each synthetic set (TSTR), tested on the holdout."""
    structure = {"trtr": _structure(features["train"], labels["train"], g[HOLDOUT], labels[HOLDOUT], config, seed),
                 "tstr": {}, "n_pcs": int(features["train"].pca.n_components_)}
    for name in syn:
        feats = _features(g[name], config, fill, seed, name)
        structure["tstr"][name] = _structure(feats, labels[name], g[HOLDOUT], labels[HOLDOUT], config, seed)
    return structure


def _gwas_section(g, labels, names, design, why, notes: list[str], config, seed) -> tuple[dict, dict]:
    """GWAS replication (Fig. 2): full-size scans of every set, then replication at matched sizes.

    Adds matched case/control counts to ``design`` and skip reasons to ``notes``; returns
    (section, plot data).
    """
    gwas: dict = {"design": design, "sets": {}}
    gwas_plot: dict = {}
    if design is None:
        notes.append(why)
        return gwas, gwas_plot
    masks = _gwas_masks(labels, ["train", *names], design)
    n_case, n_ctrl = design["n_case_matched"], design["n_control_matched"]
    for name in ["train", *names]:
        keep, case = masks[name]
        if case.all() or (~case).all():
            continue
        z, lp = gw.dominant_ztest(g[name][keep], case)
        gwas_plot[name] = {"neglog10p": lp, "qq": gw.qq_points(lp), "n_case": int(case.sum()),
                           "n_control": int((~case).sum())}
    if n_case < 5 or n_ctrl < 5:
        notes.append(f"GWAS replication skipped: a set has fewer than 5 cases or controls "
                     f"({design['case']} vs {design['control']}); matched sizes {n_case}/{n_ctrl}")
        return gwas, gwas_plot
    rng_g = _rng(seed, "gwas")
    gk, ck = g["train"][masks["train"][0]], masks["train"][1]
    for name in names:
        keep, case = masks[name]
        rep = gw.replication(gk, ck, g[name][keep], case, n_case=n_case, n_control=n_ctrl,
                             fractions=tuple(config.gwas_top_fractions), repeats=config.gwas_repeats, rng=rng_g)
        rep["lambda_gc_full"] = gwas_plot.get(name, {}).get("qq", {}).get("lambda_gc")
        rep["n_full"] = {"case": int(case.sum()), "control": int((~case).sum())}
        gwas["sets"][name] = rep
    return gwas, gwas_plot


def _gwas_masks(labels, sets: list[str], design: dict) -> dict:
    """Per set: (people with a case or control label, case among them); adds the counts to ``design``."""
    col = design["column"]
    masks = {}
    for name in sets:
        y = labels[name][col]
        keep = (y == design["case"]) | (y == design["control"])
        masks[name] = (keep, (y == design["case"])[keep])
    design["n_case_matched"] = min(int(m[1].sum()) for m in masks.values())
    design["n_control_matched"] = min(int((~m[1]).sum()) for m in masks.values())
    design["n_case"] = {k: int(m[1].sum()) for k, m in masks.items()}
    design["n_control"] = {k: int((~m[1]).sum()) for k, m in masks.items()}
    return masks


def _privacy_section(real: Cohort, holdout: Cohort, syn: dict[str, Cohort], g, fill, config,
                     seed) -> tuple[dict, dict]:
    """Privacy of every set: DCR, MIA, AATS, identical people and haplotypes; (section, DCR histograms).

    The ceiling: half of the holdout plays "synthetic", the other half plays "non-members".
    """
    x_train = dosage(g["train"], fill)
    x_hold = dosage(g[HOLDOUT], fill)
    rng_p = _rng(seed, "privacy")
    perm = rng_p.permutation(len(x_hold))
    h1, h2 = perm[: len(perm) // 2], perm[len(perm) // 2:]
    blocks = {HOLDOUT: (x_hold[h2], x_hold[h1], g[HOLDOUT][h1], holdout.subset(samples=h1) if holdout.phased else None)}
    for name, c in syn.items():
        blocks[name] = (x_hold, dosage(g[name], fill), g[name], c)
    hap_train = real.haplotypes().reshape(-1, real.n_variants) if real.phased else None
    privacy: dict = {}
    priv_plot: dict = {}
    for name, (x_non, x_s, g_s, c_s) in blocks.items():
        res = _privacy_block(x_train, x_non, x_s, config, rng_p)
        priv_plot[name] = _dcr_histograms(res.pop("_dcr_to_train"), res.pop("_dcr_to_holdout"))
        res["identical_to_train"] = pv.identical_rows(g_s, g["train"])
        res["identical_to_holdout"] = pv.identical_rows(g_s, g[HOLDOUT]) if name != HOLDOUT else None
        res["duplicates_within"] = int(len(g_s) - len({r.tobytes() for r in np.ascontiguousarray(g_s)}))
        res["n"] = int(len(g_s))
        if hap_train is not None and c_s is not None and c_s.phased and c_s.ploidy == real.ploidy:
            res["identical_haplotypes_to_train"] = pv.identical_rows(c_s.alleles, hap_train)
            res["n_haplotypes"] = int(c_s.alleles.shape[0])
        if name != HOLDOUT:
            res["guarantee"] = syn[name].meta.get("privacy")
        privacy[name] = res
    privacy[HOLDOUT]["note"] = ("ceiling: one half of the holdout plays the synthetic set, the other half the "
                                "non-members")
    return privacy, priv_plot


def _dcr_histograms(d_tr: np.ndarray, d_ho: np.ndarray) -> dict:
    """Histograms of distances to the closest real-train / real-holdout record, on shared edges."""
    dmax = float(max(d_tr.max(), d_ho.max(), 1e-9))
    e = np.linspace(0, dmax * 1.05, 41)
    return {"dcr_edges": e.tolist(), "dcr_train_hist": fid.histogram(d_tr, e),
            "dcr_holdout_hist": fid.histogram(d_ho, e)}


# ---------------------------------------------------------------------------------- main entry
def evaluate(real: Cohort, holdout: Cohort, synthetic, *, label_column: str = "super_pop",
             config: EvalConfig | None = None, seed: int = 0, progress: bool = False) -> dict:
    """Compare synthetic cohort(s) with real train, using the real holdout as the ceiling.

    Parameters
    ----------
    real : Cohort
        The real training cohort (the generator saw these people).
    holdout : Cohort
        Real people the generator never saw (same variants).
    synthetic : Cohort or dict[str, Cohort]
        One synthetic set, or several by name (e.g. ``{"vanilla": a, "guided": b}``); sizes may differ.
    label_column : str
        Sample column of the population labels (per-group fidelity, Table I, default GWAS groups).
        ``pop`` is added automatically when real train has it.
    config : EvalConfig, optional
    seed : int
        Seeds every subsample and classifier; the same inputs and seed give the same figures.
    progress : bool
        A bar over the five sections (setup, fidelity, structure, GWAS, privacy).

    Returns
    -------
    dict
        JSON-serialisable after :func:`genosynth.evaluate.report.to_json_ready` (the key ``"_private"``
        holds per-person PC scores for the PCA plot and is never written). Sections: ``inputs``,
        ``labels``, ``notes``, ``fidelity`` (a synthetic set's figures at the holdout's sample size,
        ``fidelity[set]["matching"]``), ``structure``, ``gwas``, ``privacy``, ``summary``, ``lights``,
        ``verdict`` (per synthetic set: what was generated, lights counted, privacy status, MIA AUC,
        identical people), ``plot_data``, ``timings``, ``config``, ``seed``.

    References
    ----------
    Yelmen B. et al. (2021) Creating artificial human genomes using generative neural networks.
    PLOS Genetics 17(2): e1009303.
    """
    from genosynth.provenance import versions

    config = config or EvalConfig()
    seed = int(seed)
    syn = _as_sets(synthetic)
    check_same_variants(real, {"holdout": holdout, **syn})
    names = [HOLDOUT, *syn]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    _check_set_sizes(real, holdout, syn)
    # 1. genotypes, the missing-call fill (real-train 2p) and labels of every set
    g, af_train, fill = _genotypes_and_fill(real, holdout, syn)
    features = {"train": _features(g["train"], config, fill, seed, "train")}
    labels, sources, notes = resolve_labels(real, {HOLDOUT: holdout, **syn}, _label_columns(real, label_column, config),
                                            config=config, g=g, features=features, seed=seed)
    design, why = _gwas_design(labels, label_column, config)  # checked before the long sections
    timings["labels"] = time.perf_counter() - t0
    bar = progress_bar(5, "evaluate", progress, unit="section")
    # 2. shared pair sets, real-train PCA and caches
    with _timed(timings, "setup", bar):
        pairs = _ld_pairs(real.variants, config, _rng(seed, "pairs"))
        pca = fid.RealPCA(g["train"], n_components=config.n_pcs, seed=seed)
        scores = {k: pca.transform(v) for k, v in g.items()}
        cache = _train_cache(real.variants, g, af_train, fill, config, seed)
    # 3. the sections
    with _timed(timings, "fidelity", bar):
        fidelity, plot_sets = _fidelity_section(names, g, labels, label_column, pairs, cache, scores, fill, config,
                                                seed)
    with _timed(timings, "structure", bar):
        structure = _structure_section(features, g, labels, syn, fill, config, seed)
    with _timed(timings, "gwas", bar):
        gwas, gwas_plot = _gwas_section(g, labels, names, design, why, notes, config, seed)
    with _timed(timings, "privacy", bar):
        privacy, priv_plot = _privacy_section(real, holdout, syn, g, fill, config, seed)
    # 4. results, headline summary and traffic lights
    results = {
        "genosynth_version": versions(libraries=False)["genosynth"],
        "seed": seed,
        "label_column": label_column,
        "config": config.to_dict(),
        "inputs": {"train": _describe(real), HOLDOUT: _describe(holdout),
                   "synthetic": {k: _describe(c) for k, c in syn.items()}},
        "labels": _label_summary(labels, sources),
        "notes": notes,
        "fidelity": fidelity,
        "structure": structure,
        "gwas": gwas,
        "privacy": privacy,
        "plot_data": {**_plot_data(real, g["train"], pairs, cache, plot_sets, fill, config),
                      "pca_explained_variance_ratio": pca.explained_variance_ratio,
                      "gwas": gwas_plot,
                      "dcr": priv_plot},
        "_private": {"pc_scores": {k: v[:, :2] for k, v in scores.items()},
                     "pc_labels": {k: labels[k].get(label_column) for k in scores}},
    }
    results["summary"] = {name: _flat(results, name) for name in names}
    results["lights"] = {name: traffic_lights(results["summary"][name], results["summary"][HOLDOUT]) for name in syn}
    results["verdict"] = {name: verdict(name, results["lights"][name], results["inputs"]["synthetic"][name],
                                        results["inputs"]["train"], privacy[name].get("guarantee"),
                                        fidelity[name].get("matching")) for name in syn}
    timings["total"] = time.perf_counter() - t0
    bar is not None and bar.close()
    results["timings"] = {k: round(v, 3) for k, v in timings.items()}
    return results


def _plot_data(real: Cohort, gt, pairs, cache, plot_sets, fill, config) -> dict:
    """Aggregates behind the fidelity plots: frequencies, LD pairs, decay, heatmaps, histograms."""
    edges = np.asarray(config.ld_decay_edges_bp, dtype=float)
    hi = cache["heatmap_idx"]
    pos = real.variants["pos"].to_numpy(dtype=np.int64)
    return {
        "variants": {"chrom": real.variants["chrom"].astype(str).tolist(),
                     "pos": real.variants["pos"].astype(int).tolist()},
        "af_train": cache["af_train"],
        "af": _per_set(plot_sets, "af"),
        "ld_pairs_near": _per_set(plot_sets, "ld_pairs_near"),
        "ld_pairs_within": _per_set(plot_sets, "ld_pairs_within"),
        "ld_decay_edges_bp": list(edges),
        "ld_decay_train": cache["decay_train"]["pooled"][0],
        "ld_decay_train_within": (cache["decay_train"]["within"] or (None,))[0],
        "ld_decay_pairs": _pairs_per_bin(pairs, edges),
        "ld_heatmap": {"ids": real.variants["id"].iloc[hi].astype(str).tolist(),
                       "span_bp": int(pos[hi].max() - pos[hi].min()),
                       "chrom": str(real.variants["chrom"].astype(str).to_numpy()[hi[0]]),
                       "train": r2_matrix(gt[:, hi], fill[hi]).round(4),
                       **_per_set(plot_sets, "ld_heatmap")},
        "het_edges": cache["het_edges"], "het_train_hist": fid.histogram(cache["het_train"], cache["het_edges"]),
        "het_hist": _per_set(plot_sets, "het_hist"),
        "dist_edges": cache["dist_edges"],
        "dist_within_train_hist": fid.histogram(cache["dist_within_train"], cache["dist_edges"]),
        "dist_within_hist": _per_set(plot_sets, "dist_within_hist"),
        "dist_between_hist": _per_set(plot_sets, "dist_between_hist"),
    }


def _per_set(plot_sets: dict, key: str) -> dict:
    """One plot figure of every set: ``{set: plot_sets[set][key]}``."""
    return {k: v[key] for k, v in plot_sets.items()}


def _train_decays(gt, yt, pairs, fill, config) -> dict:
    """Real train's LD decay, pooled and within each group of ``yt`` (weighted by group size), each with
    the chance r^2 per bin: ``{"pooled": (decay, null), "within": (decay, null) or None}``."""
    edges = np.asarray(config.ld_decay_edges_bp, dtype=float)
    di, dj = pairs["decay"]
    pooled = fid.ld_decay(pair_correlations(gt, di, dj, fill=fill), pairs["decay_dist"], edges)
    out = {"pooled": (pooled, [None if v is None else 1.0 / max(len(gt) - 1, 1) for v in pooled]), "within": None}
    if yt is None:
        return out
    acc, wts = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    nul, nwt = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    for lab in np.unique(yt[yt != ""]):
        m = yt == lab
        if m.sum() < config.min_group_size:
            continue
        dec = fid.ld_decay(pair_correlations(gt[m], di, dj, fill=fill), pairs["decay_dist"], edges)
        _add_decay(acc, wts, dec, m.sum())
        _add_decay(nul, nwt, [None if v is None else 1.0 / (m.sum() - 1) for v in dec], m.sum())
    out["within"] = (_mean_decay(acc, wts), _mean_decay(nul, nwt))
    return out


def _describe(c: Cohort) -> dict:
    return {"n_samples": int(c.n_samples), "n_variants": int(c.n_variants), "phased": bool(c.phased),
            "source": c.meta.get("source"), "missing_rate": float(c.missing_rate()), "origin": origin(c.meta)}


def origin(meta: dict) -> dict:
    """Where a cohort came from, as far as its ``meta`` tells: ``{"kind", "detail"}``.

    ``kind`` is ``simulated`` (``meta["simulation"]``, written by :func:`genosynth.simulation.simulate_cohort`),
    ``synthetic`` (``meta["synthetic"]`` of a genosynth generator, ``meta["generator"]`` of a baseline),
    ``real`` or ``simulated`` when ``meta["origin"]`` says so, else ``unknown``: a file read back does not
    say whether its people are real.
    """
    sim = meta.get("simulation")
    if isinstance(sim, dict):
        return {"kind": "simulated", "detail": f"msprime, {sim.get('model', 'unknown model')}, seed {sim.get('seed')}"}
    if meta.get("synthetic"):
        return {"kind": "synthetic", "detail": f"genosynth generator, sampling seed {meta.get('seed')}"}
    if meta.get("generator"):
        return {"kind": "synthetic", "detail": f"baseline generator {meta['generator']!r}"}
    declared = str(meta.get("origin", "")).lower()
    if declared in ("real", "simulated", "synthetic"):
        return {"kind": declared, "detail": "as declared by the caller (meta['origin'])"}
    return {"kind": "unknown", "detail": "not recorded with the input (a file does not say whether its people "
                                         "are real or simulated)"}


def _label_summary(labels: dict, sources: dict) -> dict:
    """Per set and label column: where the labels came from and how many people carry each."""
    return {k: {col: {**src, "counts": _counts(labels[k][col])} for col, src in v.items()}
            for k, v in sources.items()}


def _counts(y: np.ndarray) -> dict:
    vals, counts = np.unique(y.astype(str), return_counts=True)
    return {(v if v else "(none)"): int(n) for v, n in zip(vals, counts)}


# ---------------------------------------------------------------------------------- flat summary
def _flat(results: dict, name: str) -> dict:
    f = results["fidelity"][name]
    out = {
        "af_r": f["allele_frequency"]["overall"]["r"],
        "af_mean_abs_diff": f["allele_frequency"]["overall"]["mean_abs_diff"],
        "ld_r_near": f["ld"]["near"]["r"],
        "ld_r_near_within": f["ld"]["near_within"]["r"],
        "ld_r_all": f["ld"]["all"]["r"],
        "energy_distance": f["pca"]["energy_distance"],
        "energy_coefficient": f["pca"]["energy_coefficient"],
        "het_mean_abs_diff": f["heterozygosity"]["mean_abs_diff"],
        "dist_wasserstein": f["pairwise_distance"]["within"]["wasserstein"],
        "dist_wasserstein_rel": _relative(f["pairwise_distance"]["within"]),
        "ld_strength_ratio": f["ld"]["strength"]["worst"],
    }
    trtr = results["structure"]["trtr"]
    tstr = trtr if name == HOLDOUT else results["structure"]["tstr"].get(name, {})
    for col, tab in trtr.items():
        for kind in results["config"]["classifiers"]:
            if kind in tab:
                out[f"trtr_{col}_{kind}"] = tab[kind]
            if kind in tstr.get(col, {}):
                out[f"tstr_{col}_{kind}"] = tstr[col][kind]
    gs = results["gwas"]["sets"].get(name)
    if gs:
        for key, v in gs.items():
            if key.startswith("overlap_top") and not key.endswith(("_sd", "_chance")):
                out[f"gwas_{key}"] = v  # gwas_overlap_top10, ...
        out["gwas_rank_r"] = gs["rank_r"]
    p = results["privacy"][name]
    out.update({
        "identical_to_train": p["identical_to_train"],
        "identical_haplotypes_to_train": p.get("identical_haplotypes_to_train"),
        "dcr_closer_to_train": p["dcr_closer_to_train"],
        "mia_auc": p["mia_auc"],
        "aats": p["aats_train"],
        "aats_holdout": p["aats_holdout"],
        "privacy_loss": p["privacy_loss"],
    })
    guarantee = p.get("guarantee") or {}
    out["epsilon"] = guarantee.get("epsilon")
    out["delta"] = guarantee.get("delta")
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}


def _relative(dist: dict):
    """Wasserstein-1 distance between pairwise-distance distributions over the mean real-train distance."""
    w, m = dist.get("wasserstein"), dist.get("mean_ref")
    return None if w is None or not m else float(w / m)


def summary(results: dict, name: str | None = None) -> dict:
    """The headline figures of one set as a flat dict (for a one-line print).

    ``name`` is a synthetic set's name (default: the only / first one) or ``"holdout"`` for the
    ceiling. Keys: ``af_r, af_mean_abs_diff, ld_r_near, ld_r_near_within, ld_r_all, ld_strength_ratio,
    energy_distance, het_mean_abs_diff, dist_wasserstein, dist_wasserstein_rel, trtr_<col>_<clf>, tstr_<col>_<clf>, gwas_overlap_top10/20/30,
    gwas_rank_r, identical_to_train, identical_haplotypes_to_train, dcr_closer_to_train, mia_auc,
    aats, aats_holdout, privacy_loss, epsilon, delta``.
    """
    sets = results["summary"]
    if name is None:
        name = next(k for k in sets if k != HOLDOUT)
    if name not in sets:
        raise InputError(f"no set named {name!r}; sets: {sorted(sets)}")
    return dict(sets[name])
