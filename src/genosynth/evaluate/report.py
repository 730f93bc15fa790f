"""``PREFIX.json`` and a self-contained ``PREFIX.html`` from the results of :func:`evaluate`.

The HTML has no external resource (no CDN, no web font): CSS is inline and every plot is a
base64 PNG drawn with matplotlib's Agg backend. Plots show aggregates (allele frequencies, LD,
histograms, p-values) and PC projections; no per-person genotype of the real cohort is written,
and per-person PC scores stay out of the JSON.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math

import numpy as np

from genosynth.io.atomic import atomic_outputs

HOLDOUT = "holdout"
LIGHT_COLOURS = {"green": "#2e9d4f", "amber": "#e7a11a", "red": "#d23b33", "grey": "#9a9a9a"}
SET_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]

# every plot the report draws; the screenshot test checks that each one rendered
PLOTS = ("allele_frequencies", "ld_pairs", "ld_decay", "ld_strength", "ld_heatmap", "pca", "heterozygosity", "pairwise_distances",
         "structure", "gwas_manhattan", "gwas_qq", "gwas_overlap", "dcr")


# ---------------------------------------------------------------------------------- JSON
def to_json_ready(obj):
    """A copy of ``obj`` with numpy types turned into Python ones, NaN/inf into None, and keys
    starting with ``_`` (per-person values kept in memory for plots) removed."""
    if isinstance(obj, dict):
        return {str(k): to_json_ready(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [to_json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_json_ready(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


# ---------------------------------------------------------------------------------- figures
def _fig_to_img(fig, name: str, alt: str) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<figure data-plot="{name}"><img alt="{html.escape(alt)}" data-plot="{name}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>')


def _sets(results) -> list[str]:
    return [HOLDOUT, *results["inputs"]["synthetic"]]


def _colour(results, name) -> str:
    return SET_COLOURS[_sets(results).index(name) % len(SET_COLOURS)]


def _grid(n: int, *, width: float = 3.6, height: float = 3.3):
    import matplotlib.pyplot as plt

    cols = min(n, 4)
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()


def plot_allele_frequencies(results) -> str:
    pd_ = results["plot_data"]
    af_t = np.asarray(pd_["af_train"], dtype=float)
    names = _sets(results)
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names):
        af = np.asarray(pd_["af"][name], dtype=float)
        ax.scatter(af_t, af, s=4, alpha=0.5, color=_colour(results, name), rasterized=True)
        ax.plot([0, 1], [0, 1], color="k", lw=0.7)
        r = results["fidelity"][name]["allele_frequency"]["overall"]["r"]
        ax.set_title(f"{name}: r = {r:.4f}" if r is not None else name, fontsize=9)
        ax.set_xlabel("ALT frequency, real train")
        ax.set_ylabel(f"ALT frequency, {name}")
    return _fig_to_img(fig, "allele_frequencies", "Allele frequencies: real train (x) against each set (y)")


def plot_ld_pairs(results) -> str:
    """SNP-pair r in real train (x) against each set (y): near pairs pooled (top row) and within groups."""
    import matplotlib.pyplot as plt

    pd_ = results["plot_data"]
    names = _sets(results)
    fig, axes = plt.subplots(2, len(names), figsize=(3.4 * len(names), 6.4), squeeze=False)
    for col, name in enumerate(names):
        ld = results["fidelity"][name]["ld"]
        for row, (key, stat, what) in enumerate((("ld_pairs_near", ld["near"]["r"], "pooled"),
                                                 ("ld_pairs_within", ld["near_within"]["r"], "within groups"))):
            ax = axes[row, col]
            x, y = pd_[key][name]
            ax.scatter(x, y, s=4, alpha=0.5, color=_colour(results, name), rasterized=True)
            ax.plot([-1, 1], [-1, 1], color="k", lw=0.7)
            ax.set_xlim(-1, 1)
            ax.set_ylim(-1, 1)
            ax.set_title(f"{name}, {what}: r = {stat:.3f}" if stat is not None else f"{name}, {what}", fontsize=8)
            ax.set_xlabel("SNP-pair r, real train", fontsize=8)
            ax.set_ylabel(f"SNP-pair r, {name}", fontsize=8)
    fig.tight_layout()
    w = _bp(results["config"]["ld_window_bp"])
    return _fig_to_img(fig, "ld_pairs", f"Correlation of SNP pairs < {w} apart: real train against each set, pooled "
                                        "(top) and within population groups (bottom)")


def plot_ld_decay(results) -> str:
    import matplotlib.pyplot as plt

    pd_ = results["plot_data"]
    labels = _bin_labels(results)
    x = np.arange(len(labels))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, key, title in ((axes[0], "decay_pooled", "pooled"), (axes[1], "decay_within", "within groups")):
        train = pd_["ld_decay_train"] if key == "decay_pooled" else pd_["ld_decay_train_within"]
        if train is not None:
            ax.plot(x, _nan(train), "k-o", ms=3, label="real train")
        for name in _sets(results):
            ax.plot(x, _nan(results["fidelity"][name]["ld"][key]), "-o", ms=3, color=_colour(results, name),
                    label=name)
        ax.set_xticks(x, labels, rotation=30, fontsize=7)
        ax.set_title(f"LD decay, {title}", fontsize=9)
        ax.set_xlabel("distance between SNPs (same chromosome)")
    axes[0].set_ylabel("mean r\u00b2")
    axes[1].legend(fontsize=7)
    return _fig_to_img(fig, "ld_decay", "LD decay: mean r\u00b2 by distance bin, pooled and within populations")


def _bin_labels(results) -> list[str]:
    edges = np.asarray(results["plot_data"]["ld_decay_edges_bp"], dtype=float)
    return [_bp(lo) + "-" + _bp(hi) for lo, hi in zip(edges[:-1], edges[1:])]


def plot_ld_strength(results) -> str:
    """LD strength per distance bin: r^2 of each set over r^2 of real train (chance r^2 removed)."""
    import matplotlib.pyplot as plt

    labels = _bin_labels(results)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    ax.axhspan(0.9, 1.1, color="#2e9d4f", alpha=0.12, lw=0)
    ax.axhline(1.0, color="k", lw=0.8)
    basis = "within groups"
    for name in _sets(results):
        st = results["fidelity"][name]["ld"]["strength"]
        basis = "within groups" if st.get("basis") == "within" else "pooled"
        ax.plot(x, _nan(st["ratio"]), "-o", ms=4, color=_colour(results, name),
                label=name + (" (ceiling)" if name == HOLDOUT else ""))
    ax.set_xticks(x, labels, rotation=30, fontsize=7)
    ax.set_xlabel("distance between SNPs (same chromosome)")
    ax.set_ylabel("r\u00b2 set / r\u00b2 real train")
    ax.set_title(f"LD strength by distance, {basis} (1 = as strong as real; shaded 0.9-1.1)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _fig_to_img(fig, "ld_strength", "LD strength: mean r\u00b2 of each set over that of real train per distance "
                                           "bin, chance r\u00b2 (1/(n-1)) removed from both; bins with little real LD "
                                           "are left out")


def plot_ld_heatmap(results) -> str:
    hm = results["plot_data"]["ld_heatmap"]
    names = ["train", *_sets(results)]
    fig, axes = _grid(len(names), width=3.3, height=3.2)
    im = None
    for ax, name in zip(axes, names):
        m = np.asarray(hm[name], dtype=float)
        im = ax.imshow(m, vmin=0, vmax=1, cmap="Reds", interpolation="nearest")
        ax.set_title("real train" if name == "train" else name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if im is not None:
        fig.colorbar(im, ax=list(axes[:len(names)]), shrink=0.7, label="r\u00b2")
    alt = (f"LD heatmaps (r\u00b2) of {len(hm['ids'])} consecutive SNPs on chromosome {hm['chrom']} "
           f"spanning {_bp(hm['span_bp'])}: real train and every set")
    return _fig_to_img(fig, "ld_heatmap", alt)


def plot_pca(results) -> str:
    priv = results.get("_private") or {}
    scores = priv.get("pc_scores")
    names = _sets(results)
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names):
        if scores is None:
            ax.text(0.5, 0.5, "PC scores not available\n(report rebuilt from JSON)", ha="center", va="center")
            continue
        t = np.asarray(scores["train"])
        o = np.asarray(scores[name])
        ax.scatter(t[:, 0], t[:, 1], s=3, color="0.75", label="real train", rasterized=True)
        lab = priv["pc_labels"].get(name)
        if lab is not None and len(np.unique(lab)) <= 10:
            for k, v in enumerate(np.unique(lab)):
                m = lab == v
                ax.scatter(o[m, 0], o[m, 1], s=4, color=SET_COLOURS[k % len(SET_COLOURS)], label=str(v) or "?",
                           rasterized=True)
        else:
            ax.scatter(o[:, 0], o[:, 1], s=4, color=_colour(results, name), label=name, rasterized=True)
        e = results["fidelity"][name]["pca"]["energy_distance"]
        ax.set_title(f"{name}: energy distance {e:.3f}" if e is not None else name, fontsize=9)
        ax.set_xlabel(_pc_label(results, 0), fontsize=8)
        ax.set_ylabel(_pc_label(results, 1), fontsize=8)
        ax.legend(fontsize=6, markerscale=2)
    return _fig_to_img(fig, "pca", "PCA fitted on real train (grey); each set projected, coloured by label; "
                                   f"{_pc_label(results, 0)}, {_pc_label(results, 1)}")


def _pc_label(results, k: int) -> str:
    """Axis label of PC ``k`` with the share of real-train variance it explains."""
    evr = results["plot_data"].get("pca_explained_variance_ratio")
    if evr is None or len(evr) <= k or evr[k] is None:
        return f"PC{k + 1} (real train)"
    return f"PC{k + 1} ({100 * float(evr[k]):.1f} % of variance, real train)"


def plot_heterozygosity(results) -> str:
    import matplotlib.pyplot as plt

    pd_ = results["plot_data"]
    e = np.asarray(pd_["het_edges"], dtype=float)
    mid = 0.5 * (e[1:] + e[:-1])
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(mid, _density(pd_["het_train_hist"]), "k-", label="real train")
    for name in _sets(results):
        ax.plot(mid, _density(pd_["het_hist"][name]), color=_colour(results, name), label=name)
    ax.set_xlabel("heterozygous share of SNPs per person")
    ax.set_ylabel("share of people")
    ax.legend(fontsize=7)
    return _fig_to_img(fig, "heterozygosity", "Per-person heterozygosity")


def plot_pairwise_distances(results) -> str:
    import matplotlib.pyplot as plt

    pd_ = results["plot_data"]
    e = np.asarray(pd_["dist_edges"], dtype=float)
    mid = 0.5 * (e[1:] + e[:-1])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
    axes[0].plot(mid, _density(pd_["dist_within_train_hist"]), "k-", label="real train")
    for name in _sets(results):
        axes[0].plot(mid, _density(pd_["dist_within_hist"][name]), color=_colour(results, name), label=name)
        axes[1].plot(mid, _density(pd_["dist_between_hist"][name]), color=_colour(results, name),
                     label=f"real train \u2194 {name}")
    axes[0].set_title("within each set", fontsize=9)
    axes[1].set_title("between real train and each set", fontsize=9)
    for ax in axes:
        ax.set_xlabel("Euclidean distance between genotype vectors")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("share of pairs")
    return _fig_to_img(fig, "pairwise_distances", "Pairwise distance distributions")


def plot_structure(results) -> str:
    """TRTR / TSTR accuracies per label column; the y-axis is zoomed to the data, legend beside the axes."""
    import matplotlib.pyplot as plt

    trtr = results["structure"]["trtr"]
    kinds = results["config"]["classifiers"]
    cols = list(trtr)
    fig, axes = plt.subplots(1, max(1, len(cols)), figsize=(4.6 * max(1, len(cols)) + 1.6, 3.4), squeeze=False)
    names = ["TRTR (real)", *results["structure"]["tstr"]]
    width = 0.8 / len(names)
    for ax, col in zip(axes[0], cols):
        shown = []
        for k, name in enumerate(names):
            tab = trtr[col] if k == 0 else results["structure"]["tstr"][name].get(col, {})
            vals = [tab.get(kind) for kind in kinds]
            colour = _colour(results, HOLDOUT) if k == 0 else _colour(results, name)
            bars = ax.bar(np.arange(len(kinds)) + k * width, [v or 0.0 for v in vals], width, label=name, color=colour)
            ax.bar_label(bars, labels=[_fmt(v) for v in vals], fontsize=6, padding=1)
            shown += [v for v in vals if v is not None]
        ax.set_xticks(np.arange(len(kinds)) + width * (len(names) - 1) / 2, [k.upper() for k in kinds])
        ax.set_ylim(*_zoom(shown))
        ax.set_ylabel("accuracy (axis zoomed)", fontsize=8)
        ax.set_title(f"{col}: accuracy on real holdout", fontsize=9)
    if cols:
        axes[0, len(cols) - 1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return _fig_to_img(fig, "structure", "Population-structure inference: trained on real (TRTR) or synthetic (TSTR); "
                                         "the y-axis is zoomed to the accuracies shown")


def _zoom(values: list, *, lo: float = 0.0, hi: float = 1.0) -> tuple[float, float]:
    """Axis limits around ``values`` with room for bar labels, inside ``[lo, hi]``."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return lo, hi
    span = max(max(v) - min(v), 0.02)
    return max(lo, min(v) - 0.6 * span), min(hi + 0.05, max(v) + 0.4 * span)


def plot_manhattan(results) -> str:
    """-log10 p along the genome; the x-axis gives Mb within each chromosome (chromosome names on top)."""
    import matplotlib.pyplot as plt

    pd_ = results["plot_data"]
    gw = pd_["gwas"]
    names = [n for n in ["train", *_sets(results)] if n in gw]
    chrom = np.asarray(pd_["variants"]["chrom"])
    pos = np.asarray(pd_["variants"]["pos"], dtype=float)
    xs, mb_ticks, centres = _genome_x(chrom, pos)
    fig, axes = plt.subplots(max(1, len(names)), 1, figsize=(11, 1.9 * max(1, len(names)) + 0.4), sharex=True,
                             squeeze=False)
    shade = _chrom_index(chrom) % 2
    for ax, name in zip(axes[:, 0], names):
        lp = np.asarray(gw[name]["neglog10p"], dtype=float)
        ax.scatter(xs, lp, s=3, c=np.where(shade == 0, "#1f4e79", "#8fb3d9"), rasterized=True)
        ax.set_ylabel("-log10 p", fontsize=8)
        ax.set_title(f"{_set_title(name)} ({_n_gwas(gw[name])})", fontsize=9, loc="left")
    bottom, top = axes[-1, 0], axes[0, 0]
    if mb_ticks:
        bottom.set_xticks([t[0] for t in mb_ticks], [t[1] for t in mb_ticks], fontsize=7)
        if len(centres) == 1:
            bottom.set_xlabel(f"position on chromosome {centres[0][1]} (Mb)", fontsize=8)
        else:
            bottom.set_xlabel("position within each chromosome (Mb)", fontsize=8)
            sec = top.secondary_xaxis("top")
            sec.set_xticks([c[0] for c in centres], [f"chr {c[1]}" for c in centres], fontsize=7)
    else:
        bottom.set_xticks([c[0] for c in centres], [c[1] for c in centres], fontsize=6)
        bottom.set_xlabel("chromosome", fontsize=8)
    d = results["gwas"]["design"] or {}
    return _fig_to_img(fig, "gwas_manhattan",
                       f"Manhattan plots, dominant-model Z-test, {d.get('case')} (cases) vs {d.get('control')} "
                       "(controls), each set at its full size (cases / controls in each title: not matched)")


def _set_title(name: str) -> str:
    return "real train" if name == "train" else name


def _n_gwas(entry: dict) -> str:
    """"n = cases / controls" of one full-size scan."""
    if entry.get("n_case") is None:
        return "full size"
    return f"n = {entry['n_case']:,} / {entry['n_control']:,}"


def plot_qq(results) -> str:
    """Observed against expected -log10 p: the null range with the diagonal (left), the full range (right)."""
    import matplotlib.pyplot as plt

    gw = results["plot_data"]["gwas"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.3))
    names = [n for n in ["train", *_sets(results)] if n in gw]
    top = max([max(gw[n]["qq"]["expected"]) for n in names if gw[n]["qq"]["expected"]] or [1.0])
    lim = top * 1.05
    for name in names:
        q = gw[name]["qq"]
        colour = "k" if name == "train" else _colour(results, name)
        lam = q.get("lambda_gc")
        label = f"{_set_title(name)} (\u03bb={lam:.2f}, {_n_gwas(gw[name])})" if lam else _set_title(name)
        exp_, obs = np.asarray(q["expected"], dtype=float), np.asarray(q["observed"], dtype=float)
        inside = obs <= lim
        axes[0].plot(exp_[inside], obs[inside], ".", ms=3, color=colour, label=label)
        axes[0].plot(exp_[~inside], np.full((~inside).sum(), lim), "^", ms=3, color=colour)
        axes[1].plot(exp_, obs, ".", ms=3, color=colour, label=label)
    axes[0].plot([0, lim], [0, lim], "k--", lw=0.8, label="null (observed = expected)")
    axes[0].set_xlim(0, lim)
    axes[0].set_ylim(0, lim * 1.03)
    axes[0].set_aspect("equal")
    axes[0].set_title("null range (points above drawn as \u25b2 at the edge)", fontsize=8)
    full_top = max(lim, max([max(gw[n]["qq"]["observed"]) for n in names if gw[n]["qq"]["observed"]] or [lim]))
    axes[1].plot([0, full_top], [0, full_top], "k--", lw=0.8)
    axes[1].set_xlim(0, lim)
    axes[1].set_title("full range", fontsize=8)
    for ax in axes:
        ax.set_xlabel("expected -log10 p")
        ax.set_ylabel("observed -log10 p")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=2, frameon=False)  # below the axes
    return _fig_to_img(fig, "gwas_qq", "QQ plots of the association p-values, each set at its full size (\u03bb_GC at "
                                       "matched sizes is in the table)")


def plot_gwas_overlap(results) -> str:
    import matplotlib.pyplot as plt

    sets = results["gwas"]["sets"]
    fr = results["config"]["gwas_top_fractions"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    names = [n for n in _sets(results) if n in sets]
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        vals = [sets[name].get(f"overlap_top{int(round(100 * f))}") or 0.0 for f in fr]
        ax.bar(np.arange(len(fr)) + k * width, vals, width, color=_colour(results, name),
               label=f"real train vs {name}" + (" (ceiling)" if name == HOLDOUT else ""))
    ax.plot(np.arange(len(fr)) + width * (len(names) - 1) / 2, fr, "k_", ms=20, label="chance")
    ax.set_xticks(np.arange(len(fr)) + width * (len(names) - 1) / 2, [f"top {int(100 * f)} %" for f in fr])
    ax.set_ylim(0, 1)
    ax.set_ylabel("overlap of lowest p-values")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _fig_to_img(fig, "gwas_overlap", "Overlap of top association signals at matched sample sizes")


def plot_dcr(results) -> str:
    dcr = results["plot_data"]["dcr"]
    names = [n for n in _sets(results) if n in dcr]
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names):
        e = np.asarray(dcr[name]["dcr_edges"], dtype=float)
        mid = 0.5 * (e[1:] + e[:-1])
        ax.plot(mid, dcr[name]["dcr_train_hist"], color="#d23b33", label="to real train")
        ax.plot(mid, dcr[name]["dcr_holdout_hist"], color="#1f77b4", label="to real holdout")
        ax.set_title(name + (" (half vs half, ceiling)" if name == HOLDOUT else ""), fontsize=9)
        ax.set_xlabel("distance to closest record")
        ax.set_ylabel("people")
        ax.legend(fontsize=7)
    return _fig_to_img(fig, "dcr", "Distance to closest record: synthetic to real train vs to real holdout "
                                   "(train subsampled to the holdout size)")


# ---------------------------------------------------------------------------------- HTML
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left}
.dot{display:inline-block;width:11px;height:11px;border-radius:6px;margin-right:5px;vertical-align:middle}
figure{margin:10px 0} figure img{max-width:100%} figcaption{font-size:12px;color:#555}
.note{background:#fff7e0;border-left:4px solid #e7a11a;padding:5px 9px;font-size:13px;margin:4px 0}
.small{font-size:12px;color:#555}
#verdict{border:2px solid #444;border-radius:6px;padding:8px 12px;margin:10px 0 14px;background:#fafafa}
#verdict h2{margin:0 0 4px;border:0;font-size:17px} #verdict p{margin:3px 0;font-size:13px}
#verdict table{width:100%;font-size:13px} #verdict td{vertical-align:top}
.badge{display:inline-block;padding:1px 6px;border-radius:4px;color:#fff;font-weight:600;font-size:12px}
"""


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "\u2013"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "\u2013"
        return f"{v:.{digits}f}" if abs(v) >= 10 ** -digits or v == 0 else f"{v:.2e}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list], *, left: int = 1) -> str:
    h = "".join(f'<th class="{"l" if k < left else ""}">{html.escape(c)}</th>' for k, c in enumerate(header))
    body = []
    for row in rows:
        cells = []
        for k, c in enumerate(row):
            text = c if isinstance(c, str) and c.startswith("<") else _fmt(c)
            cells.append(f'<td class="{"l" if k < left else ""}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{h}</tr>{''.join(body)}</table>"


def _light(colour: str) -> str:
    return f'<span class="dot" style="background:{LIGHT_COLOURS[colour]}" title="{colour}"></span>'


def summary_table(results) -> str:
    names = list(results["inputs"]["synthetic"])
    rows_by_key: dict[str, list] = {}
    order = []
    for name in names:
        for row in results["lights"][name]:
            if row["key"] not in rows_by_key:
                rows_by_key[row["key"]] = [row["label"], row["ceiling"]]
                order.append(row["key"])
    for key in order:
        for name in names:
            row = next((r for r in results["lights"][name] if r["key"] == key), None)
            rows_by_key[key].append(f'{_light(row["light"])}{_fmt(row["value"])}' if row else "\u2013")
    header = ["Metric", "Real holdout (ceiling)", *names]
    return _table(header, [rows_by_key[k] for k in order])


def render_html(results, *, title: str | None = None) -> str:
    """The whole report as one HTML string."""
    title = title or "genosynth evaluation report"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body>"]
    parts.append(f"<h1>{html.escape(title)}</h1>")
    parts += verdict_box(results)
    parts += _html_summary(results)
    parts += _html_fidelity(results)
    parts += _html_structure(results)
    parts += _html_gwas(results)
    parts += _html_privacy(results)
    t = results.get("timings", {})
    parts.append(f"<p class='small'>Evaluation time {t.get('total', 0):.1f} s. Config: "
                 f"{html.escape(json.dumps(to_json_ready(results['config'])))}</p>")
    # lets a headless browser confirm that every image decoded (read back by the screenshot check)
    # and where the verdict box sits in the first screen (read back by tests/evaluate/test_report.py)
    parts.append("<script>window.addEventListener('load',function(){var n=0;for(var i of document.images)"
                 "{if(i.complete&&i.naturalWidth>0)n++;}var b=document.body;b.setAttribute('data-images-rendered',n);"
                 "var v=document.getElementById('verdict');if(v){var r=v.getBoundingClientRect();"
                 "b.setAttribute('data-verdict-box',[r.top+scrollY,r.bottom+scrollY,r.left,r.right].join(','));}"
                 "b.setAttribute('data-viewport',[innerWidth,innerHeight].join(','));"
                 "});</script>")
    parts.append("</body></html>")
    return "\n".join(parts)


def verdict_box(results) -> list[str]:
    """The first screen: what was generated, fidelity lights counted, privacy status, MIA AUC, identical people."""
    verdicts = results.get("verdict") or {}
    inp = results["inputs"]
    train = inp["train"]
    real = train.get("origin") or {"kind": "unknown", "detail": ""}
    kind = real["kind"]
    colour = {"simulated": "#1f77b4", "real": "#2e9d4f"}.get(kind, "#9a9a9a")
    parts = ["<section id='verdict'><h2>Verdict</h2>",
             f"<p><b>Real cohort:</b> <span class='badge' style='background:{colour}'>{html.escape(kind)}</span> "
             f"{html.escape(real.get('detail') or '')}; real train {train['n_samples']:,} people, holdout "
             f"{inp[HOLDOUT]['n_samples']:,}; {train['n_variants']:,} SNPs"
             + (f"; source {html.escape(str(train['source']))}" if train.get("source") else "") + ".</p>"]
    rows = []
    for name, v in verdicts.items():
        f = v["fidelity"]
        flagged = ", ".join(f"{html.escape(x['label'])} ({x['light']})" for x in f["flagged"][:4])
        flagged += " ..." if len(f["flagged"]) > 4 else ""
        origin = v.get("origin") or {}
        detail = origin.get("detail", "") if origin.get("kind") not in (None, "unknown") else ""
        rows.append([
            f"<b>{html.escape(name)}</b>",
            f"<span>{v['n_people']:,} people \u00d7 {v['n_snps']:,} SNPs</span><br><span class='small'>"
            f"{html.escape(str(v['source']))}{'; ' + html.escape(detail) if detail else ''}</span>",
            "<span>" + " ".join(f"{_light(c)}{f[c]} {c}" for c in ("green", "amber", "red")) + "</span>"
            + (f"<br><span class='small'>{flagged}</span>" if flagged else ""),
            _privacy_cell(v["privacy"]),
            f"{_light(v['mia_light'])}{_fmt(v['mia_auc'])}<br><span class='small'>ideal 0.5</span>",
            f"{_light(v['identical_light'])}{_fmt(v['identical_people'])}",
        ])
    parts.append(_table(["Synthetic set", "Generated", "Faithful? (fidelity, structure, GWAS lights)",
                         "Private? (formal guarantee)", "MIA AUC", "Identical people"], rows, left=6))
    parts.append("<p class='small'>" + _matching_sentence(results) + " Lights compare each figure with the real "
                 "holdout (fresh real people, the ceiling): green as good, amber noticeably worse or better than "
                 "the ceiling by more than the tolerance, red fails.</p></section>")
    return parts


def _privacy_cell(p: dict) -> str:
    if p.get("formal_dp"):
        return f"<span class='badge' style='background:#2e9d4f'>DP</span> {html.escape(p['statement'])}"
    return ("<span class='badge' style='background:#d23b33'>no formal DP guarantee</span><br><span class='small'>"
            "trained without differential privacy; only the empirical attacks below speak to privacy</span>")


def _matching_sentence(results) -> str:
    """Whether each synthetic set's fidelity figures rest on as many people as the holdout's."""
    bits = []
    for name in results["inputs"]["synthetic"]:
        m = results["fidelity"][name].get("matching") or {}
        if not m:
            continue
        if m.get("matched") and m.get("n_used") != m.get("n_full"):
            bits.append(f"{html.escape(name)}: {m['n_used']:,} of {m['n_full']:,} people drawn to match the holdout"
                        + (" per group" if m.get("per_group") else ""))
        elif m.get("matched"):
            bits.append(f"{html.escape(name)}: same size as the holdout")
        else:
            bits.append(f"{html.escape(name)}: NOT matched ({m.get('n_used', 0):,} people against a holdout of "
                        f"{m.get('n_holdout', 0):,}; too few in some group)")
    return ("Fidelity figures at the holdout's sample size: " + "; ".join(bits) + ".") if bits else ""


def _html_summary(results) -> list[str]:
    """Inputs line, traffic-light summary table, notes and the label sources."""
    inp = results["inputs"]
    parts = [
        f"<p class='small'>genosynth {html.escape(str(results['genosynth_version']))}, seed {results['seed']}; "
        f"real train {inp['train']['n_samples']:,} people, real holdout {inp[HOLDOUT]['n_samples']:,}, "
        + ", ".join(f"{html.escape(k)} {v['n_samples']:,}" for k, v in inp["synthetic"].items())
        + f"; {inp['train']['n_variants']:,} variants. Every figure compares a set with real train; the real "
        "holdout row is the ceiling (fresh real people). Green: as good as the holdout within tolerance; amber: "
        "noticeably worse; red: fails.</p>"]
    parts.append("<h2 id='summary'>Summary</h2>")
    parts.append(summary_table(results))
    for name in results["inputs"]["synthetic"]:
        for row in results["lights"][name]:
            if row.get("note"):
                parts.append(f"<div class='note'>{_light(row['light'])}<b>{html.escape(name)}, "
                             f"{html.escape(row['label'])}:</b> {html.escape(row['note'])}</div>")
    for note in results["notes"]:
        parts.append(f"<div class='note'>{html.escape(note)}</div>")
    lab_rows = []
    for set_name, cols in results["labels"].items():
        for col, info in cols.items():
            lab_rows.append([set_name, col, info["source"], info["n_pseudo"],
                             ", ".join(f"{k} {v}" for k, v in list(info["counts"].items())[:12])
                             + (" ..." if len(info["counts"]) > 12 else "")])
    parts.append("<h3>Labels</h3>" + _table(["Set", "Column", "Source", "Pseudo-labelled", "Counts"], lab_rows,
                                            left=5))
    return parts


def _html_fidelity(results) -> list[str]:
    """Fidelity table, per-group table and the fidelity plots."""
    sets = _sets(results)
    parts = ["<h2 id='fidelity'>Fidelity</h2>"]
    rows = []
    for name in sets:
        f = results["fidelity"][name]
        rows.append([name, _people_used(results, name), f["allele_frequency"]["overall"]["r"],
                     f["allele_frequency"]["overall"]["mean_abs_diff"], f["ld"]["near"]["r"],
                     f["ld"]["near_within"]["r"], f["ld"]["all"]["r"], f["ld"]["strength"]["worst"],
                     f["pca"]["energy_distance"], f["pca"]["energy_coefficient"],
                     f["heterozygosity"]["mean"], f["pairwise_distance"]["within"]["wasserstein"]])
    w = results["config"]["ld_window_bp"]
    parts.append(_table(["Set", "People used", "AF r", "AF mean |diff|", f"LD r (< {_bp(w)}, pooled)",
                         f"LD r (< {_bp(w)}, within)", "LD r (random pairs)", "LD strength (worst bin)",
                         "Energy distance", "Energy coefficient", "Mean heterozygosity", "Distance W1"], rows))
    parts.append(_strength_table(results))
    near = results["fidelity"][HOLDOUT]["ld"]["near"]
    parts.append(f"<p class='small'>LD pairs &lt; {_bp(w)}: {near['n_pairs']:,} used of "
                 f"{near.get('n_pairs_total', 0):,}; random genome-wide pairs: "
                 f"{results['fidelity'][HOLDOUT]['ld']['all']['n_pairs']:,}. Population structure inflates pooled "
                 "LD between ancestry-informative SNPs; the within-group column removes it.</p>")
    col = results["label_column"]
    g_rows = []
    for name in sets:
        per_af = results["fidelity"][name]["allele_frequency"]["per_group"].get(col, {})
        per_ld = results["fidelity"][name]["ld"]["near_within"].get("per_group", {})
        for grp in sorted(set(per_af) | set(per_ld)):
            a, ld = per_af.get(grp, {}), per_ld.get(grp, {})
            g_rows.append([name, grp, a.get("n"), a.get("r"), a.get("mean_abs_diff"), ld.get("r"), ld.get("n_pairs")])
    if g_rows:
        parts.append(f"<h3>Per {html.escape(col)}</h3>" + _table(
            ["Set", "Group", "People", "AF r", "AF mean |diff|", "LD r (near pairs)", "Pairs"], g_rows, left=2))
    for plot in (plot_allele_frequencies, plot_ld_pairs, plot_ld_decay, plot_ld_strength, plot_ld_heatmap, plot_pca,
                 plot_heterozygosity, plot_pairwise_distances):
        parts.append(plot(results))
    return parts


def _people_used(results, name: str) -> str:
    """People a set's fidelity figures rest on, and whether that matches the holdout."""
    if name == HOLDOUT:
        return f"{results['inputs'][HOLDOUT]['n_samples']:,} (ceiling)"
    m = results["fidelity"][name].get("matching") or {}
    if not m:
        return "\u2013"
    tag = "matched" if m.get("matched") else f"<b>not matched</b> (holdout {m['n_holdout']:,})"
    return f"{m['n_used']:,} of {m['n_full']:,}, {tag}"


def _strength_table(results) -> str:
    """LD strength per distance bin (r^2 ratio to real train) of every set, with the pairs per bin."""
    labels = _bin_labels(results)
    counts = results["plot_data"].get("ld_decay_pairs") or [None] * len(labels)
    rows = [["SNP pairs", *counts]]
    basis = ""
    for name in _sets(results):
        st = results["fidelity"][name]["ld"]["strength"]
        basis = st.get("basis", "")
        rows.append([name, *st["ratio"]])
    return (f"<h3>LD strength by distance ({html.escape(basis)})</h3>" + _table(["Set", *labels], rows)
            + "<p class='small'>Mean r\u00b2 of the set over mean r\u00b2 of real train in each distance bin, after "
            "removing the r\u00b2 chance gives at each sample size (1/(n-1)); 1 = as strong as real LD, below 1 "
            "weaker. \u2013: too few pairs or too little real LD in the bin. The light uses the bin farthest from 1."
            "</p>")


def _html_structure(results) -> list[str]:
    """Table I (TRTR / TSTR accuracies) and its plot."""
    parts = ["<h2 id='structure'>Population structure inference</h2>"]
    kinds = results["config"]["classifiers"]
    rows = []
    for c, tab in results["structure"]["trtr"].items():
        rows.append(["TRTR (real train)", c, *[tab.get(k) for k in kinds], tab.get("n_train")])
        for name in results["inputs"]["synthetic"]:
            t2 = results["structure"]["tstr"][name].get(c, {})
            rows.append([f"TSTR ({name})", c, *[t2.get(k) for k in kinds], t2.get("n_train")])
    parts.append(_table(["Trained on", "Label", *[k.upper() for k in kinds], "Training people"], rows, left=2))
    parts.append(f"<p class='small'>Features: top {results['structure'].get('n_pcs')} PCs of a PCA fitted on the "
                 "training set; accuracy on the real holdout.</p>")
    parts.append(plot_structure(results))
    return parts


def _html_gwas(results) -> list[str]:
    """GWAS design, replication table and the Manhattan, QQ and overlap plots."""
    parts = ["<h2 id='gwas'>GWAS replication</h2>"]
    d = results["gwas"]["design"]
    if d is None:
        parts.append("<p>Skipped (see notes).</p>")
        return parts
    parts.append(f"<p class='small'>Cases: {html.escape(d['case'])}, controls: {html.escape(d['control'])} "
                 f"({html.escape(d['column'])}); dominant model, per-SNP Z-test. Replication figures and "
                 f"\u03bb_GC (matched) use {d.get('n_case_matched')} cases and {d.get('n_control_matched')} controls "
                 f"drawn from each set ({results['config']['gwas_repeats']} repeats); \u03bb_GC grows with the "
                 "sample size wherever cases and controls differ, so only the matched column compares sets."
                 + (" Cases and controls are two population groups: this is a test of population differences, "
                    "not a trait GWAS." if d.get("mode") == "groups" else "") + "</p>")
    fr = results["config"]["gwas_top_fractions"]
    rows = []
    for name in _sets(results):
        s = results["gwas"]["sets"].get(name)
        if s:
            full = s.get("n_full") or {}
            rows.append([f"real train vs {name}", *[s[f"overlap_top{int(round(100 * f))}"] for f in fr],
                         s["rank_r"], s.get("lambda_gc_ref"), s.get("lambda_gc"), s.get("lambda_gc_full"),
                         f"{full.get('case', 0):,} / {full.get('control', 0):,}"])
    if rows:
        parts.append(_table(["Comparison", *[f"Top {int(100 * f)} % overlap" for f in fr],
                             "Rank r of -log10 p", "\u03bb_GC real train (matched)", "\u03bb_GC set (matched)",
                             "\u03bb_GC set (full size, not matched)", "Full size: cases / controls"], rows))
    for plot in (plot_manhattan, plot_qq, plot_gwas_overlap):
        parts.append(plot(results))
    return parts


def _html_privacy(results) -> list[str]:
    """Privacy table, the differential-privacy guarantee of each set and the DCR plot."""
    parts = ["<h2 id='privacy'>Privacy</h2>"]
    rows = []
    for name in _sets(results):
        p = results["privacy"][name]
        rows.append([name, p["n"], p["identical_to_train"], p.get("identical_haplotypes_to_train"),
                     p.get("duplicates_within"), p["dcr_median_to_train"], p["dcr_median_to_holdout"],
                     p["dcr_closer_to_train"], p["mia_auc"], p["aats_train"], p["aats_holdout"],
                     p["privacy_loss"]])
    parts.append(_table(["Set", "People", "Identical people", "Identical haplotypes", "Duplicates within",
                         "Median DCR to train", "Median DCR to holdout", "Closer to train", "MIA AUC",
                         "AATS(train)", "AATS(holdout)", "Privacy loss"], rows))
    parts.append("<p class='small'>Ideal: no identical people, closer-to-train share 0.5, MIA AUC 0.5, AATS 0.5, "
                 "privacy loss 0. AATS above 0.5 means synthetic and real people are easy to tell apart: a realism "
                 "gap, not a leak; below 0.5 they sit closer to train than real people do. The holdout row splits the holdout in two halves (one plays the synthetic set). "
                 "MIA: distance-based attack, train members vs holdout non-members, balanced by subsampling, "
                 f"{results['config']['mia_repeats']} repeats.</p>")
    g_rows = []
    for name in results["inputs"]["synthetic"]:
        guarantee = results["privacy"][name].get("guarantee")
        status = (results.get("verdict") or {}).get(name, {}).get("privacy") or {}
        extra = {k: v for k, v in (guarantee or {}).items() if k not in ("epsilon", "delta")}
        g_rows.append([name, status.get("epsilon"), status.get("delta"), ", ".join(status.get("mechanisms", [])),
                       status.get("statement", ""), json.dumps(to_json_ready(extra))[:400] if extra else ""])
    parts.append("<h3>Differential privacy guarantee</h3>" + _table(
        ["Set", "\u03b5", "\u03b4", "Mechanisms", "Statement", "Details"], g_rows, left=1))
    parts.append(plot_dcr(results))
    return parts


def write_report(results: dict, prefix: str, *, title: str | None = None) -> list[str]:
    """Write ``PREFIX.json`` (every figure, no per-person values) and ``PREFIX.html``; return the paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    json_path, html_path = f"{prefix}.json", f"{prefix}.html"
    text = json.dumps(to_json_ready(results), indent=1, allow_nan=False)
    page = render_html(results, title=title)
    with atomic_outputs([json_path, html_path]) as (tmp_json, tmp_html):
        with open(tmp_json, "w", encoding="utf-8") as fh:
            fh.write(text)
        with open(tmp_html, "w", encoding="utf-8") as fh:
            fh.write(page)
    return [json_path, html_path]


# ---------------------------------------------------------------------------------- small helpers
def _bp(v) -> str:
    v = float(v)
    if v >= 1e6:
        return f"{v / 1e6:g} Mb"
    if v >= 1e3:
        return f"{v / 1e3:g} kb"
    return f"{v:g} bp"


def _nan(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _density(counts) -> np.ndarray:
    c = np.asarray(counts, dtype=float)
    return c / c.sum() if c.sum() else c


def _chrom_key(c: str):
    c = str(c).removeprefix("chr")
    return (0, int(c), "") if c.isdigit() else (1, 0, c)


def _chrom_index(chrom: np.ndarray) -> np.ndarray:
    uniq = sorted(set(map(str, chrom)), key=_chrom_key)
    lookup = {c: k for k, c in enumerate(uniq)}
    return np.array([lookup[str(c)] for c in chrom])


def _genome_x(chrom: np.ndarray, pos: np.ndarray, *, max_mb_chroms: int = 4):
    """Genome x coordinates for a Manhattan plot (chromosomes in natural order, side by side).

    Returns
    -------
    xs : float64, shape (n_variants,)
    mb_ticks : list of (x, label) in Mb within each chromosome; empty when there are more than
        ``max_mb_chroms`` chromosomes (then only chromosome names fit)
    centres : list of (x, chromosome name), one per chromosome
    """
    from matplotlib.ticker import MaxNLocator

    idx = _chrom_index(chrom)
    xs = np.zeros(len(pos))
    mb_ticks, centres = [], []
    n_chrom = len(np.unique(idx))
    offset = 0.0
    for k in range(idx.max() + 1 if len(idx) else 0):
        m = idx == k
        if not m.any():
            continue
        lo, hi = pos[m].min(), pos[m].max()
        xs[m] = offset + pos[m] - lo
        centres.append((offset + (hi - lo) / 2, str(chrom[m][0])))
        if n_chrom <= max_mb_chroms:
            for t in MaxNLocator(nbins=max(2, 8 // n_chrom)).tick_values(lo / 1e6, hi / 1e6):
                if lo / 1e6 - 1e-9 <= t <= hi / 1e6 + 1e-9:
                    mb_ticks.append((offset + t * 1e6 - lo, f"{round(t, 6):g}"))
        offset += (hi - lo) + max(1e6, 0.02 * (hi - lo))
    return xs, mb_ticks, centres
