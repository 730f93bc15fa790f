"""Population-structure inference (Table I): PCA features + LR / SVM / RF classifiers.

TRTR: trained on real train, tested on the real holdout (the ceiling). TSTR: trained on a synthetic
set, tested on the same real holdout. The PCA giving the features is fitted on the training set
only (once per training set, shared by the classifiers and label columns), so TSTR uses no real
genotypes before testing.

References
----------
Esteban C., Hyland S. L., Ratsch G. (2017) Real-valued (medical) time series generation with
recurrent conditional GANs. arXiv:1706.02633. (Train-on-synthetic, test-on-real.)
Yelmen B. et al. (2021) Creating artificial human genomes using generative neural networks.
PLOS Genetics 17(2): e1009303.
"""

from __future__ import annotations

import warnings

import numpy as np

from genosynth.stats.frequency import dosage
from genosynth.evaluate._arrays import pca_solver
from genosynth.errors import InputError

CLASSIFIER_NAMES = {"lr": "Logistic regression", "svm": "SVM (RBF)", "rf": "Random forest"}


class PCAFeatures:
    """Standardised top-``n_pcs`` PC scores of a PCA fitted on one training set.

    Parameters
    ----------
    g : int8, shape (n_people, n_variants); the training genotypes.
    fill : float, shape (n_variants,); value for missing calls (real-train 2p).
    """

    def __init__(self, g: np.ndarray, *, fill: np.ndarray, n_pcs: int, seed: int):
        from sklearn.decomposition import PCA

        self.fill = fill
        x = dosage(g, fill)
        self.center = x.mean(axis=0)
        k = int(max(1, min(n_pcs, x.shape[0] - 1, x.shape[1])))
        self.pca = PCA(n_components=k, svd_solver=pca_solver(*x.shape), random_state=seed)
        f = self.pca.fit_transform(x - self.center)
        self.sd = np.where(f.std(axis=0) > 0, f.std(axis=0), 1.0)

    def transform(self, g: np.ndarray) -> np.ndarray:
        """float64, shape (n_people, n_pcs)."""
        return self.pca.transform(dosage(g, self.fill) - self.center) / self.sd


def make_classifier(kind: str, *, rf_trees: int, seed: int, threads: int | None):
    """An sklearn classifier by short name: ``lr``, ``svm`` or ``rf``."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    if kind == "lr":
        return LogisticRegression(max_iter=500, tol=1e-3)
    if kind == "svm":
        return SVC(kernel="rbf", C=1.0, gamma="scale")
    if kind == "rf":
        return RandomForestClassifier(n_estimators=rf_trees, min_samples_leaf=2, random_state=seed, n_jobs=threads)
    raise InputError(f"unknown classifier {kind!r}; choose from {sorted(CLASSIFIER_NAMES)}")


def stratified_cap(labels: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices keeping at most ``cap`` rows, proportionally per label (all rows when fewer)."""
    n = len(labels)
    if n <= cap:
        return np.arange(n)
    keep = []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        m = max(1, int(round(cap * len(idx) / n)))
        keep.append(rng.choice(idx, size=min(m, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))


def accuracy_table(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray, *,
                   kinds: tuple[str, ...], rf_trees: int, seed: int, threads: int | None) -> dict:
    """Accuracy on the test features of each classifier trained on the training features.

    Parameters
    ----------
    f_train : float, shape (n_train, k); f_test : float, shape (n_test, k) (same PCA).
    y_train, y_test : str arrays; "" (unknown) rows are dropped.

    Returns
    -------
    ``{kind: accuracy, "balanced_<kind>": balanced accuracy, n_train, n_test, n_classes}``.
    """
    from sklearn.metrics import balanced_accuracy_score

    tr = np.flatnonzero(y_train != "")
    te = np.flatnonzero(y_test != "")
    out: dict = {"n_train": int(len(tr)), "n_test": int(len(te)),
                 "n_classes": int(len(np.unique(y_train[tr]))) if len(tr) else 0}
    if len(tr) < 2 or len(te) == 0 or out["n_classes"] < 2:
        out["skipped"] = "fewer than two labelled classes in the training set, or no labelled test people"
        return out
    for kind in kinds:
        clf = make_classifier(kind, rf_trees=rf_trees, seed=seed, threads=threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(f_train[tr], y_train[tr])
            pred = clf.predict(f_test[te])
            out[f"balanced_{kind}"] = float(balanced_accuracy_score(y_test[te], pred))
        out[kind] = float(np.mean(pred == y_test[te]))
    return out
