"""VCF / VCF.gz / BCF: reading with cyvcf2, writing BGZF-compressed VCF with zlib.

Reading keeps biallelic SNPs (REF and ALT single bases; a monomorphic record with ALT ``.`` is
kept with ``alt = "."``). Multi-allelic records and non-SNPs (indels, MNPs, symbolic ``<DEL>``,
``*``) are skipped and counted in ``cohort.meta["skipped"]``. The cohort is phased (haplotype
rows) when every called genotype is phased (``0|1``; a fully missing ``./.`` carries no phase and
does not count; a file without any called genotype is unphased), otherwise it holds ALT counts. A genotype with any missing allele is -1.

Writing produces real BGZF blocks (the format of ``bgzip``), so ``tabix -p vcf`` and
``bcftools index`` work on the output without ``bgzip`` being installed.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from genosynth.cohort import MISSING, Cohort, make_samples, make_variants
from genosynth.errors import InputError
from genosynth.io.atomic import atomic_outputs
from genosynth.io.order import in_genomic_order
from genosynth.io.samples import sample_batches
from genosynth.io.tokens import check_tokens
from genosynth.provenance import versions

_BASES = frozenset("ACGTNacgtn")
_SKIP_KEYS = ("multi-allelic", "non-SNP")
_FIELDS = "VCF fields are tab-separated"  # why ids must be single tokens


# ---------------------------------------------------------------------------------- reading
def read_vcf(path: str, *, threads: int | None = None, progress: bool = False) -> Cohort:
    """Read the GT field of a VCF, VCF.gz or BCF into a :class:`Cohort`.

    Parameters
    ----------
    path : file name; compression and VCF/BCF are detected from the content.
    threads : htslib decompression threads (default: 1 extra thread).
    progress : a bar of records read, shown when reading takes more than 3 s.

    Returns
    -------
    Cohort with ``alleles`` int8, shape (n_samples * ploidy, n_variants) of haplotypes when all
    calls are phased, else shape (n_samples, n_variants) of ALT counts; -1 missing.
    ``meta["skipped"]`` counts the records left out.

    Notes
    -----
    ``path`` may name several files separated by commas (``chr1.vcf.gz,chr2.vcf.gz``: one file per
    chromosome, the same samples in each): they are read in turn and joined along the variants
    (:func:`genosynth.cohort.concat_variants`).
    """
    import cyvcf2

    if "," in path and not os.path.exists(path):
        from genosynth.cohort import concat_variants

        paths = [p.strip() for p in path.split(",") if p.strip()]
        return concat_variants([read_vcf(p, threads=threads, progress=progress) for p in paths], names=paths)
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found; check the path given to --vcf")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: file is empty; give a VCF with a header, samples and records")
    try:
        reader = cyvcf2.VCF(path, threads=threads or 2)  # lazy=True segfaults on rec.FORMAT (cyvcf2 0.35)
    except Exception as exc:  # cyvcf2 raises OSError or a bare Exception for unreadable files
        raise InputError(f"{path}: cannot be read as VCF/BCF ({exc}); check that it is a valid VCF, VCF.gz or BCF") from None
    bar = None
    if progress:
        from genosynth.runtime import progress_bar

        bar = progress_bar(None, f"reading {os.path.basename(path)}", True, unit="record", delay=3.0)
    try:
        return _read_records(reader, path, bar)
    finally:
        if bar is not None:
            bar.close()
        reader.close()


def _read_records(reader, path: str, bar=None) -> Cohort:
    samples = list(reader.samples)
    if not samples:
        raise InputError(
            f"{path}: the VCF has no samples (no columns after FORMAT); genosynth needs individual genotypes, "
            "not a sites-only file"
        )
    if not _header_has_gt(reader):
        raise InputError(
            f"{path}: the header declares no FORMAT/GT field; genosynth reads genotypes from GT. "
            "Give a VCF with genotype calls (e.g. bcftools view without -G)"
        )
    n_smp = len(samples)
    skipped = dict.fromkeys(_SKIP_KEYS, 0)
    chrom, pos, vid, ref, alt = [], [], [], [], []
    state = _GenotypeBlocks(path)
    for record_no, rec in _records(reader, path):
        if bar is not None:
            bar.update(1)
        alts = rec.ALT
        if len(alts) > 1:
            skipped["multi-allelic"] += 1
            continue
        a = alts[0] if alts else "."
        r = rec.REF
        if len(r) != 1 or r not in _BASES or (a != "." and (len(a) != 1 or a not in _BASES)):
            skipped["non-SNP"] += 1
            continue
        if "GT" not in rec.FORMAT:
            raise InputError(
                f"{path}: record {record_no} ({rec.CHROM}:{rec.POS}) has no GT field (FORMAT {':'.join(rec.FORMAT)}); "
                "genosynth reads genotypes from GT. Drop such records (bcftools view -i 'GT!=\"mis\"') or re-call them"
            )
        # (N, P+1) int16: alleles (-1 missing, -2 vector end of a shorter call), last column phased
        state.add(rec.genotype.array(), f"record {record_no} ({rec.CHROM}:{rec.POS})")
        chrom.append(rec.CHROM)
        pos.append(rec.POS)
        vid.append(rec.ID or ".")
        ref.append(r.upper())
        alt.append(a.upper())
    calls, ploidy, all_phased = state.finish()
    if not calls:
        raise InputError(
            f"{path}: no usable records: genosynth reads biallelic SNPs and skipped "
            f"{skipped['multi-allelic']} multi-allelic and {skipped['non-SNP']} non-SNP records. "
            "Split multi-allelic sites first (bcftools norm -m -any) or give a file with SNPs"
        )
    if all_phased:
        h = np.concatenate(calls, axis=0)  # (V, N, P)
        alleles = np.ascontiguousarray(h.reshape(len(h), n_smp * ploidy).T)  # (N*P, V)
    else:
        counts = []
        for h in calls:  # (b, N, P) blocks
            c = h.sum(axis=2, dtype=np.int8)  # (b, N)
            c[(h < 0).any(axis=2)] = MISSING
            counts.append(c)
        alleles = np.ascontiguousarray(np.concatenate(counts, axis=0).T)  # (N, V)
    variants = make_variants(chrom=chrom, pos=pos, ref=ref, alt=alt, id=vid)
    return Cohort(alleles=alleles, variants=variants, samples=make_samples(samples), phased=all_phased,
                  ploidy=ploidy, meta={"source": os.path.abspath(path), "format": "vcf", "skipped": skipped})


def _records(reader, path: str):
    """Yield ``(record number, record)``; a read error (truncated or malformed file) is an InputError."""
    record_no = 0
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            return
        except Exception as exc:  # cyvcf2 raises a bare Exception when htslib fails to parse or decompress
            raise InputError(
                f"{path}: cannot read record {record_no + 1} ({exc}); the file is truncated or malformed. "
                "Check it with bcftools view, or re-create it"
            ) from None
        record_no += 1
        yield record_no, rec


class _GenotypeBlocks:
    """Collects per-record ``genotype.array()`` results and checks them a block of records at a time.

    Checking ploidy and phase on blocks of records keeps the per-record Python work to one append.
    """

    BLOCK = 512

    def __init__(self, path: str):
        self.path = path
        self.ploidy: int | None = None
        self.all_phased, self.any_called = True, False
        self.blocks: list[np.ndarray] = []  # int8, shape (b, N, P)
        self._pending: list[np.ndarray] = []
        self._where: list[str] = []

    def add(self, arr: np.ndarray, where: str) -> None:
        p = arr.shape[1] - 1
        if self.ploidy is None:
            self.ploidy = p
        elif p != self.ploidy:
            self._mixed(where, {p, self.ploidy})
        self._pending.append(arr)
        self._where.append(where)
        if len(self._pending) >= self.BLOCK:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        p = self.ploidy
        block = np.stack(self._pending)  # (b, N, P+1) int16
        gt = block[..., :p]  # (b, N, P)
        short = (gt == -2).any(axis=(1, 2))  # (b,) records holding calls of lower ploidy
        if short.any():
            k = int(np.flatnonzero(short)[0])
            self._mixed(self._where[k], set(np.unique((gt[k] != -2).sum(axis=1)).tolist()) | {p})
        called = (gt >= 0).any(axis=2)  # (b, N)
        self.any_called = self.any_called or bool(called.any())
        self.all_phased = self.all_phased and bool(block[..., p][called].all())
        self.blocks.append(np.where(gt < 0, MISSING, gt).astype(np.int8))
        self._pending.clear()
        self._where.clear()

    def _mixed(self, where: str, ploidies: set[int]) -> None:
        raise InputError(
            f"{self.path}: mixed ploidy at {where}: genotypes with {sorted(ploidies)} alleles; genosynth needs one "
            "ploidy. Restrict the input to autosomes (bcftools view -t ^X,Y,MT) or fix the ploidy "
            "(bcftools +fixploidy)"
        )

    def finish(self) -> tuple[list[np.ndarray], int | None, bool]:
        """Blocks of calls (int8 (b, N, P), -1 missing), the ploidy, and whether all called genotypes are phased."""
        self._flush()
        # a file of missing calls only has no phase
        return self.blocks, self.ploidy, self.all_phased and self.any_called


def _header_has_gt(reader) -> bool:
    return any(h.type == "FORMAT" and h.info().get("ID") == "GT" for h in reader.header_iter())


# ---------------------------------------------------------------------------------- writing
def write_vcf(cohort: Cohort, path: str, *, level: int = 4, threads: int | None = None) -> list[str]:
    """Write ``cohort`` as a BGZF-compressed VCF 4.2 with one GT field; return ``[path]``.

    Phased cohorts are written with ``|``, unphased ones with ``/`` (ALT alleles last); missing
    calls are ``.``. The header records ``##source=genosynth`` and, for a synthetic cohort, what
    made it (:func:`provenance_lines`). Records are written in genomic order
    (:func:`genosynth.io.order.genomic_order`) so that ``bcftools index`` and plink2 accept the file.

    Parameters
    ----------
    cohort : any cohort.
    path : output file name (conventionally ``.vcf.gz``).
    level : zlib compression level of the BGZF blocks (4: a quarter of the time of bgzip's 6 for
        files about 15% larger).
    threads : compression threads (default: up to 4 cores).
    """
    cohort = in_genomic_order(cohort)
    step = 2048
    blocks = (cohort.alleles[:, s:s + step].T for s in range(0, cohort.n_variants, step))  # (v, rows)
    return write_vcf_blocks(path, blocks, variants=cohort.variants, samples=cohort.samples, meta=cohort.meta,
                            phased=cohort.phased, ploidy=cohort.ploidy, level=level, threads=threads)


def write_vcf_blocks(path: str, blocks, *, variants, samples, meta: dict, phased: bool, ploidy: int,
                     level: int = 4, threads: int | None = None) -> list[str]:
    """:func:`write_vcf` from variant-major blocks, so a cohort larger than memory can be written.

    blocks : iterable of int8 arrays, shape (v, n_rows), the variants of ``variants`` in order
        (already in genomic order); rows are haplotypes (``phased``) or ALT counts.
    samples : the sample table, or a :class:`genosynth.io.samples.SampleSpool` whose ids go into
        the ``#CHROM`` line a batch at a time.
    """
    check_tokens(variants["id"], "variant id", fields=_FIELDS)
    check_tokens(variants["chrom"], "chromosome name", fields=_FIELDS)
    with atomic_outputs([path]) as (tmp,):
        with BgzfWriter(tmp, level=level, threads=threads) as out:
            out.write(_header_text(variants, None, meta)[:-1].encode("utf-8"))  # up to FORMAT, no newline
            for part in sample_batches(samples):
                check_tokens(part["sample"], "sample id", fields=_FIELDS)
                out.write("".join("\t" + str(s) for s in part["sample"]).encode("utf-8"))
            out.write(b"\n")
            for chunk in _record_chunks(variants, blocks, phased=phased, ploidy=ploidy, n_smp=len(samples)):
                out.write(chunk)
    return [path]


def vcf_header(cohort: Cohort) -> str:
    """The meta-information lines and the ``#CHROM`` line of :func:`write_vcf`."""
    return _header_text(cohort.variants, cohort.samples, cohort.meta)


def provenance_lines(meta: dict) -> list[str]:
    """Header lines (without ``##``) saying what made a synthetic cohort, from its ``meta``.

    ``genosynth_model`` (checkpoint file name), ``genosynth_model_sha256``, ``genosynth_seed``,
    ``genosynth_privacy_status`` (``epsilon=..,delta=..`` or ``no formal DP guarantee``) and, when
    the model carries one, its privacy record as ``genosynth_privacy=<json>``. Non-synthetic
    cohorts give none.
    """
    if not meta.get("synthetic"):
        return [f"genosynth_privacy={json.dumps(meta['privacy'], sort_keys=True, default=str)}"] \
            if meta.get("privacy") else []
    lines = []
    if meta.get("model"):
        lines.append(f"genosynth_model={meta['model']}")
    if meta.get("model_sha256"):
        lines.append(f"genosynth_model_sha256={meta['model_sha256']}")
    lines.append(f"genosynth_seed={meta.get('seed')}")
    lines.append(f"genosynth_privacy_status={privacy_status(meta.get('privacy'))}")
    if meta.get("privacy"):
        lines.append("genosynth_privacy=" + json.dumps(meta["privacy"], sort_keys=True, default=str))
    return lines


def privacy_status(privacy: dict | None) -> str:
    """``"epsilon=E,delta=D (mechanisms: ...)"`` of a model's privacy record, else ``"no formal DP guarantee"``.

    >>> privacy_status(None)
    'no formal DP guarantee'
    >>> privacy_status({"epsilon": 2.0, "delta": 1e-5, "breakdown": {"dpsgd": 1.9, "total": 2.0}})
    'epsilon=2,delta=1e-05 (mechanisms: dpsgd)'
    """
    if not privacy or privacy.get("epsilon") is None:
        return "no formal DP guarantee"
    mechanisms = [k for k in privacy.get("breakdown", {}) if k != "total"]
    text = f"epsilon={float(privacy['epsilon']):.4g},delta={float(privacy.get('delta') or 0):g}"
    return text + (f" (mechanisms: {', '.join(mechanisms)})" if mechanisms else "")


def _header_text(variants, samples, meta: dict) -> str:
    """The header lines; the last, ``#CHROM ... FORMAT``, ends with the ids of ``samples`` (a
    sample table; none when ``None``)."""
    lines = [
        "##fileformat=VCFv4.2",
        f"##fileDate={_dt.date.today():%Y%m%d}",
        "##source=genosynth",
        f"##genosynth_version={versions(libraries=False)['genosynth']}",
    ]
    for chrom in dict.fromkeys(variants["chrom"].astype(str)):
        lines.append(f"##contig=<ID={chrom}>")
    lines.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    lines += ["##" + line for line in provenance_lines(meta)]
    columns = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"]
    ids = [] if samples is None else [str(s) for s in samples["sample"]]
    lines.append("\t".join(columns + ids))
    return "\n".join(lines) + "\n"


def _genotype_table(phased: bool, ploidy: int) -> tuple[np.ndarray, int]:
    """Text of every genotype code as a uint8 array, shape (n_codes, 2 * ploidy), ending in a tab.

    Phased: code = sum_j (allele_j + 1) * 3**j over the ploidy alleles (allele -1 missing).
    Unphased: code = ALT count + 1 (0 missing).
    """
    width = 2 * ploidy
    if phased:
        rows = []
        for combo in itertools.product((-1, 0, 1), repeat=ploidy):
            text = "|".join("." if a < 0 else str(a) for a in combo)
            code = sum((a + 1) * 3**j for j, a in enumerate(combo))
            rows.append((code, text))
    else:
        rows = [(0, "/".join(["."] * ploidy))]
        rows += [(k + 1, "/".join(["0"] * (ploidy - k) + ["1"] * k)) for k in range(ploidy + 1)]
    table = np.zeros((len(rows), width), dtype=np.uint8)
    for code, text in rows:
        table[code] = np.frombuffer((text + "\t").encode(), dtype=np.uint8)
    return table, width


def _record_chunks(variants, blocks, *, phased: bool, ploidy: int, n_smp: int):
    """Yield the VCF body as bytes, one variant-major block (v, n_rows) at a time (vectorised text)."""
    table, width = _genotype_table(phased, ploidy)
    alt = ["." if a in ("", "0") else a for a in variants["alt"].astype(str)]
    prefixes = [f"{c}\t{int(p)}\t{i}\t{r}\t{a}\t.\t.\t.\tGT\t".encode()
                for c, p, i, r, a in zip(variants["chrom"], variants["pos"], variants["id"], variants["ref"], alt)]
    start = 0
    for block in blocks:
        v = block.shape[0]
        if phased:
            h = block.reshape(v, n_smp, ploidy)  # (v, N, P)
            weights = (3 ** np.arange(ploidy, dtype=np.int16)).reshape(1, 1, ploidy)
            codes = ((h.astype(np.int16) + 1) * weights).sum(axis=2, dtype=np.int16)  # (v, N)
        else:
            codes = block.astype(np.int16) + 1  # (v, N)
        text = table[codes]  # (v, N, width)
        text[:, -1, -1] = ord("\n")
        text = text.reshape(v, n_smp * width)
        parts = []
        for k in range(v):
            parts.append(prefixes[start + k])
            parts.append(text[k].tobytes())
        start += v
        yield b"".join(parts)


# ---------------------------------------------------------------------------------- BGZF
_BGZF_HEADER = struct.Struct("<4BI2BH2BHH")  # gzip header with the BC extra field
_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_BGZF_BLOCK_INPUT = 0xFF00  # uncompressed bytes per block, as bgzip does


class BgzfWriter:
    """Write a BGZF file: a series of gzip members of at most 64 KiB, each with a ``BC`` extra field
    giving its size, ended by the standard empty EOF block (SAM/BAM specification, section 4.1).

    Blocks are compressed ``threads`` at a time in a thread pool (zlib releases the GIL).
    """

    def __init__(self, path: str, *, level: int = 4, threads: int | None = None):
        self._fh = open(path, "wb")
        self._level = level
        self._threads = max(1, threads or min(4, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(self._threads) if self._threads > 1 else None
        self._buffer = bytearray()
        self._batch = _BGZF_BLOCK_INPUT * 16 * self._threads  # input bytes compressed per round

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self._batch:
            n = len(self._buffer) // _BGZF_BLOCK_INPUT * _BGZF_BLOCK_INPUT
            self._write_blocks(self._buffer[:n])
            del self._buffer[:n]

    def _write_blocks(self, data: bytearray) -> None:
        view = bytes(data)
        pieces = [view[i:i + _BGZF_BLOCK_INPUT] for i in range(0, len(view), _BGZF_BLOCK_INPUT)]
        compress = partial(_bgzf_blocks, level=self._level)
        for blocks in (self._pool.map(compress, pieces) if self._pool else map(compress, pieces)):
            self._fh.write(blocks)

    def close(self) -> None:
        if self._fh is None:
            return
        if self._buffer:
            self._write_blocks(self._buffer)
            self._buffer.clear()
        self._fh.write(_BGZF_EOF)
        self._shutdown()

    def _shutdown(self) -> None:
        self._fh.close()
        self._fh = None
        if self._pool:
            self._pool.shutdown()

    def __enter__(self) -> "BgzfWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._fh is not None:
            self._shutdown()


def _bgzf_blocks(data: bytes, *, level: int) -> bytes:
    """``data`` (at most ``0xFF00`` bytes) as one BGZF block.

    zlib's worst case (deflateBound) for 0xFF00 input bytes is 65,311 bytes, so a block never
    exceeds the 64 KiB BGZF limit, even for incompressible data.
    """
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    payload = compressor.compress(data) + compressor.flush()
    header = _BGZF_HEADER.pack(0x1F, 0x8B, 8, 4, 0, 0, 0xFF, 6, ord("B"), ord("C"), 2, len(payload) + 25)
    return header + payload + struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data))


__all__ = ["read_vcf", "write_vcf", "write_vcf_blocks", "vcf_header", "provenance_lines", "privacy_status",
           "BgzfWriter"]
