"""Copula factors solved once, after training, and stored in the checkpoint.

The banded copula (:func:`genosynth.sampling.ld_guidance.copula_sample`) draws alleles through a
per-label Markov Gaussian whose factor is solved from the decoder's class probabilities of some
synthetic calibration rows. Solved per request, that setup is most of a draw at 10^4+ SNPs
(20,000 SNPs: 85 % of a 600-person run). It depends only on the model and the request's options,
so the trainer solves it once for the model's default request (:func:`solve_stored_factors`) and
the sampler reuses it for every request with those options (:func:`stored_cache`); other
requests solve their own, as before. Only generated rows enter: the factor is post-processing of
the model and its (already stored) correlation prior, and carries no training person's values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from genosynth.runtime import progress_bar

if TYPE_CHECKING:  # pragma: no cover
    from genosynth.sampling.generator import Generator

#: seed of the calibration rows the stored factors are solved from (synthetic rows only)
FACTOR_SEED = 20_240_917

#: the stored factors are solved from up to this many rows x SNPs per label (a request's own solve uses
#: ``calib_rows``, 64): more rows, less sampling noise in the one factor every later request reuses. The
#: solve's cost grows with rows x SNPs: 419 rows at 20,000 SNPs took over 13 minutes of a training run, so
#: from 16,384 SNPs on the stored solve uses a request's 64 rows
FACTOR_CELLS = 2 ** 20

#: ... and from at most this many rows per label
FACTOR_MAX_ROWS = 512


def factor_rows(n_variants: int, calib_rows: int) -> int:
    """Calibration rows per label for the stored factors: ``FACTOR_CELLS / V`` within ``[calib_rows, 512]``.

    >>> factor_rows(805, 64), factor_rows(5_000, 64), factor_rows(20_000, 64), factor_rows(100_000, 64)
    (512, 209, 64, 64)
    """
    return int(min(FACTOR_MAX_ROWS, max(calib_rows, FACTOR_CELLS // max(1, n_variants))))


def request_signature(model: "Generator", *, method: str, steps: int, guidance: float, pheno_guidance: float | None,
                      temperature: float, eta: float, fine: bool, pheno: bool) -> dict:
    """The options a copula factor depends on (the decoded marginals' distribution per label)."""
    sc = model.config.sampling
    return {"method": method, "steps": int(steps), "guidance": float(guidance),
            "pheno_guidance": None if pheno_guidance is None else float(pheno_guidance),
            "temperature": float(temperature), "eta": float(eta), "sampler": sc.sampler,
            "latent_steps": int(sc.latent_steps), "latent_lr": float(sc.latent_lr),
            "ancestry_spread": bool(sc.ancestry_spread and model.ancestry_spread is not None),
            "ancestry_spread_scale": float(sc.ancestry_spread_scale), "fine": bool(fine), "pheno": bool(pheno),
            "corr_options": sorted(model.corr_options.items())}


def default_signature(model: "Generator") -> dict | None:
    """The signature of the model's default request (None: it decodes without the copula)."""
    method = model.decoding()
    if method not in ("copula", "latent+copula") or model.config.sampling.argmax:
        return None
    sc = model.config.sampling
    fine = model.fine_labels is not None and sc.fine_labels
    return request_signature(model, method=method, steps=sc.steps, guidance=sc.guidance,
                             pheno_guidance=sc.pheno_guidance, temperature=sc.temperature, eta=sc.eta,
                             fine=fine, pheno=False)


def solve_stored_factors(model: "Generator", *, report: Callable[[str], None] | None = None,
                         rows: int | None = None, progress: bool = False) -> dict | None:
    """Each label's copula factor for the model's default request, as stored in a checkpoint.

    Per label, ``rows`` rows (default :func:`factor_rows`) are drawn with the default options from a
    fixed seed (:data:`FACTOR_SEED`) and the factor solved from them, as the first block of a request
    would from its ``calib_rows``. ``progress`` shows a bar of labels done (minutes per label at 10^5 SNPs).

    Returns
    -------
    ``{"signature": dict, "labels": {index: {"beta": float32 (V, w), "s": float32 (V,), "lam": float32
    (V,) or None, "shift": float32 (V,) or None}}}``, or None when the default decoding has no copula.
    """
    signature = default_signature(model)
    if signature is None:
        return None
    rows = rows or factor_rows(model.corr_prior.n_variants, model._corr_config(signature["method"]).calib_rows)
    per_person = 2 if model.phased else 1
    n_people = -(-rows // per_person)
    rng = torch.Generator().manual_seed(FACTOR_SEED)
    cache: dict = {}
    options = model.corr_options
    model.corr_options = {**options, "calib_rows": n_people * per_person}  # the solve reads every row drawn
    bar = progress_bar(len(model.vocabulary), "copula factors", progress, unit="label")
    try:
        for j, name in enumerate(model.vocabulary):
            if report is not None:
                report(f"copula factor of label {name} ({j + 1}/{len(model.vocabulary)}, {n_people * per_person} rows)")
            people = np.full(n_people, j, dtype=np.int64)
            fine = model._fine_people(people, rng) if signature["fine"] else None
            lab = torch.from_numpy(people).repeat_interleave(per_person)  # (rows,)
            model.sample_rows(lab, rng=rng, cache=cache, use_stored=False,
                              fine=None if fine is None else torch.from_numpy(fine).repeat_interleave(per_person))
            if bar is not None:
                bar.update(1)
    finally:
        model.corr_options = options
        if bar is not None:
            bar.close()
    (solved,) = cache.values()  # one request key: the defaults (with the rows above)
    return {"signature": signature, "labels": {int(j): _pack(*solved[j]) for j in sorted(solved)}}


def _pack(beta: np.ndarray, s: np.ndarray, mix: tuple | None) -> dict:
    lam, shift = (None, None) if mix is None else mix
    f32 = lambda a: None if a is None else np.asarray(a, dtype=np.float32)  # noqa: E731
    return {"beta": f32(beta), "s": f32(s), "lam": f32(lam), "shift": f32(shift)}


def _unpack(d: dict) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    f64 = lambda a: None if a is None else np.asarray(a, dtype=np.float64)  # noqa: E731
    mix = None if d["lam"] is None else (f64(d["lam"]), f64(d["shift"]))
    return f64(d["beta"]), f64(d["s"]), mix


def stored_cache(stored: dict | None, signature: dict) -> dict:
    """The stored factors as a copula cache (label -> ``(beta, s, mix)``) when ``signature`` is the one
    they were solved for; otherwise empty (the request solves its own)."""
    if stored is None or stored["signature"] != signature:
        return {}
    return {j: _unpack(d) for j, d in stored["labels"].items()}


def payload_factors(payload: dict, report: Callable[[str], None] | None = None, *,
                    progress: bool = False) -> dict | None:
    """:func:`solve_stored_factors` of the finished model in a checkpoint ``payload`` (the trainers' last step)."""
    from genosynth.sampling.generator import Generator

    return solve_stored_factors(Generator.from_payload(payload), report=report, progress=progress)
