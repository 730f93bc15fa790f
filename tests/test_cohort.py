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


# ------------------------------------------------------------------ joining chromosomes (issue 17)
def _part(chrom, n_var, *, phased, samples=("a", "b"), seed=0):
    rng = np.random.default_rng(seed)
    rows = len(samples) * (2 if phased else 1)
    a = rng.integers(0, 2 if phased else 3, size=(rows, n_var)).astype(np.int8)
    v = make_variants(chrom=[chrom] * n_var, pos=np.arange(1, n_var + 1) * 100, ref=["A"] * n_var, alt=["T"] * n_var)
    return Cohort(alleles=a, variants=v, samples=make_samples(list(samples), pop=["GBR", "YRI"]), phased=phased,
                  meta={"source": f"{chrom}.vcf.gz", "skipped": {"non-SNP": 1}})


def test_concat_variants_joins_chromosomes_side_by_side():
    from genosynth.cohort import concat_variants

    one, two = _part("1", 3, phased=True, seed=1), _part("2", 2, phased=True, seed=2)
    joined = concat_variants([one, two], names=["c1", "c2"])
    assert joined.phased and joined.n_variants == 5
    np.testing.assert_array_equal(joined.alleles, np.concatenate([one.alleles, two.alleles], axis=1))
    assert list(joined.variants["chrom"]) == ["1"] * 3 + ["2"] * 2
    assert joined.meta["sources"] == ["1.vcf.gz", "2.vcf.gz"] and joined.meta["skipped"] == {"non-SNP": 2}
    assert joined.samples.equals(one.samples)
    mixed = concat_variants([one, _part("3", 2, phased=False, seed=3)])
    assert not mixed.phased  # one unphased part: all joined as genotypes
    np.testing.assert_array_equal(mixed.alleles[:, :3], one.genotypes())
    assert concat_variants([one]) is one


def test_concat_variants_refuses_other_people_and_duplicate_ids():
    from genosynth.cohort import concat_variants

    one = _part("1", 2, phased=False)
    with pytest.raises(InputError, match="same people in the same order"):
        concat_variants([one, _part("2", 2, phased=False, samples=("b", "a"))], names=["x", "y"])
    with pytest.raises(InputError, match="y has other sample ids"):
        concat_variants([one, _part("2", 2, phased=False, samples=("a", "c"))], names=["x", "y"])
    with pytest.raises(InputError, match="duplicate variant ids"):
        concat_variants([one, _part("1", 2, phased=False)])
    with pytest.raises(InputError, match="no cohort"):
        concat_variants([])
