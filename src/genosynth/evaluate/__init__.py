"""Evaluation suite: fidelity, population structure, GWAS replication and privacy of synthetic cohorts.

>>> from genosynth.evaluate import evaluate, summary, write_report, EvalConfig  # doctest: +SKIP
>>> results = evaluate(train, holdout, synthetic, label_column="super_pop", seed=0)  # doctest: +SKIP
>>> summary(results)["af_r"]  # doctest: +SKIP
"""

from genosynth.evaluate.baselines import copy_generator, independent_snps_generator, split_train_holdout
from genosynth.evaluate.settings import EvalConfig
from genosynth.evaluate.core import check_same_variants, evaluate, summary

__all__ = [
    "EvalConfig",
    "check_same_variants",
    "copy_generator",
    "evaluate",
    "independent_snps_generator",
    "split_train_holdout",
    "summary",
    "write_report",
]


def write_report(results, prefix, **kwargs):
    """Write ``PREFIX.json`` and ``PREFIX.html``; see :func:`genosynth.evaluate.report.write_report`."""
    from genosynth.evaluate.report import write_report as _write

    return _write(results, prefix, **kwargs)
