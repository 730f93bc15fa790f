"""The Cohort data model: validation at construction, genotype/haplotype views, frequencies, subsets."""

from __future__ import annotations

import numpy as np
import pytest

from genosynth.cohort import Cohort, make_samples, make_variants
from genosynth.errors import InputError


def _variants(v=3):
    return make_variants(chrom=["1"] * v, pos=np.arange(1, v + 1) * 10, ref=["A"] * v, alt=["G"] * v)


def _phased():
    # 2 samples x 2 haplotypes x 3 variants; sample 1 misses one allele of variant 2
    h = np.array([[0, 1, 1], [1, 1, 0], [0, 0, -1], [0, 1, 1]], dtype=np.int8)
    return Cohort(alleles=h, variants=_variants(), samples=make_samples(["a", "b"], pop=["GBR", "YRI"]), phased=True)


def test_make_variants_fills_default_ids():
    v = make_variants(chrom=[1, 2], pos=[5, 7], ref=["A", "C"], alt=["G", "T"], id=["rs1", "."])
    assert list(v["id"]) == ["rs1", "2:7_C_T"] and v["chrom"].dtype == object and v["pos"].dtype == np.int64


def test_genotypes_haplotypes_and_frequencies():
    c = _phased()
    np.testing.assert_array_equal(c.haplotypes()[1], [[0, 0, -1], [0, 1, 1]])
    np.testing.assert_array_equal(c.genotypes(), [[1, 2, 1], [0, 1, -1]])
    np.testing.assert_allclose(c.allele_frequencies(), [1 / 4, 3 / 4, 2 / 3])  # over called alleles
    u = c.unphased()
    assert not u.phased and u.n_samples == 2
    np.testing.assert_allclose(u.allele_frequencies(), [1 / 4, 3 / 4, 1 / 2])  # the -1 genotype drops both
    assert c.missing_rate() == pytest.approx(1 / 12)
    with pytest.raises(InputError, match="unphased"):
        u.haplotypes()


def test_subset_keeps_haplotype_pairs_together():
    c = _phased().subset(samples=[1], variants=np.array([True, False, True]))
    np.testing.assert_array_equal(c.alleles, [[0, -1], [0, 1]])
    assert list(c.samples["sample"]) == ["b"] and list(c.variants["pos"]) == [10, 30]


def test_labels():
    c = _phased()
    assert list(c.labels("pop")) == ["GBR", "YRI"]
    with pytest.raises(InputError, match="no column 'colour'"):
        c.labels("colour")


@pytest.mark.parametrize("alleles, phased, message", [
    (np.zeros((2, 3), dtype=np.int16), False, "dtype int8"),
    (np.zeros((3, 3), dtype=np.int8), False, "3 rows but 2 samples need 2"),
    (np.zeros((2, 2), dtype=np.int8), False, "2 variant columns"),
    (np.full((2, 3), 3, dtype=np.int8), False, "values must lie in -1..2"),
    (np.full((4, 3), 2, dtype=np.int8), True, "values must lie in -1..1"),
    (np.zeros(3, dtype=np.int8), False, "2-D"),
])
def test_validation_errors(alleles, phased, message):
    with pytest.raises(InputError, match=message):
        Cohort(alleles=alleles, variants=_variants(), samples=make_samples(["a", "b"]), phased=phased)


def test_duplicate_ids_are_refused():
    with pytest.raises(InputError, match="duplicate sample ids"):
        Cohort(alleles=np.zeros((2, 3), dtype=np.int8), variants=_variants(), samples=make_samples(["a", "a"]),
               phased=False)
    v = make_variants(chrom=["1", "1"], pos=[1, 2], ref=["A", "A"], alt=["G", "G"], id=["x", "x"])
    with pytest.raises(InputError, match="duplicate variant ids.*set-all-var-ids"):
        Cohort(alleles=np.zeros((1, 2), dtype=np.int8), variants=v, samples=make_samples(["a"]), phased=False)


def test_text_extra_columns_are_object_dtype():
    s = make_samples(["a", "b"], tag=["Real", "Syn"], score=[0.5, 1.5])
    assert s["tag"].dtype == object and s["score"].dtype == np.float64
