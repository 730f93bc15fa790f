"""Hostile inputs against every command: one table of cases, one check.

Each case runs ``genosynth.cli.main(argv)`` in a fresh folder holding a tiny cohort (60 people x
40 SNPs as ``sim.bed/.bim/.fam``, ``sim.vcf.gz``, ``sim.hapt/.legend``, ``sim.samples.tsv``), a
tiny trained model (``model.pt``) and the case's own files, and expects what every bad input must
give: exit status 2, one line on stderr that names the fix and no traceback, every file that was
there before byte-unchanged, and nothing new but ``PREFIX.log``.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil

import pytest

from genosynth.cli import main

# ---------------------------------------------------------------------------------- hostile files
VCF_HEAD = ('##fileformat=VCFv4.2\n##contig=<ID=1>\n##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t")


def vcf(samples: str, *records: str) -> str:
    """A plain VCF: ``samples`` space-separated, each record's fields space-separated."""
    return VCF_HEAD + "\t".join(samples.split()) + "\n" + "".join("\t".join(r.split()) + "\n" for r in records)


def _from(name: str, edit=lambda b: b):
    """A file made from a base file of the case folder, its bytes passed through ``edit``."""
    return lambda folder: edit(open(os.path.join(folder, name), "rb").read())


def _lines(edit):
    """Edit a text file's list of lines."""
    return lambda b: "".join(edit(b.decode().splitlines(keepends=True))).encode()


def bfile(prefix: str, **parts) -> dict:
    """``prefix.bed/.bim/.fam``: copies of ``sim``'s unless ``bed=``, ``bim=`` or ``fam=`` is given."""
    return {f"{prefix}.{ext}": parts.get(ext, _from(f"sim.{ext}")) for ext in ("bed", "bim", "fam")}


LATIN1_TABLE = "sample\tpop\tsuper_pop\nJos\xe9\tYRI\tAFR\n".encode("latin-1")
BAD_NAME_VCF = VCF_HEAD.encode() + b"a\xff\xfeb\tc\n1\t10\trs1\tA\tG\t.\t.\t.\tGT\t0|1\t1|1\n"
RECORDS = ("1 10 rs1 A G . . . GT 0|1 1|1", "1 20 rs2 C T . . . GT 1|1 0|0")
EVAL = ["evaluate", "--real", "sim", "--holdout", "sim.vcf.gz", "--synthetic", "sim.hapt"]
PRIVATE = ["train", "--bfile", "sim", "--samples", "sim.samples.tsv", "--size", "tiny", "--out", "t"]

# id, argv, files to create, a text the error line must hold
CASES = [
    # --- VCF
    ("vcf-non-utf8-sample", ["info", "--vcf", "bad.vcf"], {"bad.vcf": BAD_NAME_VCF}, "bad.vcf"),
    ("vcf-non-utf8-convert", ["convert", "--vcf", "bad.vcf", "--format", "bed", "--out", "o"],
     {"bad.vcf": BAD_NAME_VCF}, "UTF-8"),
    ("vcf-allele-2-of-biallelic", ["info", "--vcf", "g.vcf"], {"g.vcf": vcf("a b", "1 10 rs1 A G . . . GT 0|2 1|1")},
     "g.vcf"),
    ("vcf-sites-only", ["info", "--vcf", "s.vcf"],
     {"s.vcf": VCF_HEAD.replace("\tFORMAT\t", "\n") + "1\t10\trs1\tA\tG\t.\t.\t.\n"}, "samples"),
    ("vcf-no-gt-header", ["info", "--vcf", "n.vcf"],
     {"n.vcf": vcf("a b", *RECORDS).replace("##FORMAT=<ID=GT", "##FORMAT=<ID=XX")}, "GT"),
    ("vcf-empty", ["info", "--vcf", "e.vcf"], {"e.vcf": ""}, "empty"),
    ("vcf-truncated-gz", ["info", "--vcf", "t.vcf.gz"],
     {"t.vcf.gz": gzip.compress(vcf("a b", *RECORDS * 50).encode())[:-40]}, "t.vcf.gz"),
    ("vcf-only-multiallelic", ["info", "--vcf", "m.vcf"], {"m.vcf": vcf("a b", "1 10 rs1 A G,T . . . GT 0|1 2|1")},
     "bcftools norm"),
    ("vcf-mixed-ploidy", ["info", "--vcf", "p.vcf"], {"p.vcf": vcf("a b", "1 10 rs1 A G . . . GT 0|1 1")}, "ploidy"),
    ("vcf-garbage", ["info", "--vcf", "g.vcf"], {"g.vcf": "this is not a VCF\n\x00\x01\n"}, "g.vcf"),
    ("vcf-missing-file", ["info", "--vcf", "nope.vcf"], {}, "nope.vcf"),
    ("vcf-duplicate-samples", ["info", "--vcf", "d.vcf"], {"d.vcf": vcf("a a", *RECORDS)}, "d.vcf"),
    # --- PLINK
    ("bed-missing", ["info", "--bfile", "nope"], {}, "nope"),
    ("bed-truncated", ["info", "--bfile", "tr"], bfile("tr", bed=_from("sim.bed", lambda b: b[:-5])), "tr.bed"),
    ("bed-bad-magic", ["info", "--bfile", "mg"], bfile("mg", bed=_from("sim.bed", lambda b: b"\x00\x00\x00" + b[3:])),
     "mg.bed"),
    ("bim-short", ["info", "--bfile", "sb"], bfile("sb", bim=_from("sim.bim", _lines(lambda ls: ls[:-3]))), "sb"),
    ("bim-four-columns", ["info", "--bfile", "bc"],
     bfile("bc", bim=_from("sim.bim", _lines(lambda ls: [" ".join(x.split()[:4]) + "\n" for x in ls]))), "bc.bim"),
    ("fam-non-utf8", ["info", "--bfile", "fu"],
     bfile("fu", fam=_from("sim.fam", lambda b: b.replace(b"sim_000001", b"sim_00000\xe9", 2))), "fu.fam"),
    ("bim-multiallelic-alt", ["info", "--bfile", "ma"],
     bfile("ma", bim=_from("sim.bim", _lines(lambda ls: [ls[0].replace("\t", " ").rsplit(" ", 1)[0] + " G,T\n"]
                                                     + ls[1:]))), "ma.bim"),
    # --- .hapt + legend
    ("hapt-without-legend", ["info", "--hapt", "sim.hapt"], {}, "--legend"),
    ("hapt-legend-short", ["info", "--hapt", "sim.hapt", "--legend", "s.legend"],
     {"s.legend": _from("sim.legend", _lines(lambda ls: ls[:-4]))}, "legend"),
    ("hapt-allele-2", ["info", "--hapt", "b.hapt", "--legend", "sim.legend"],
     {"b.hapt": _from("sim.hapt", _lines(lambda ls: [ls[0][:-2] + "2\n"] + ls[1:]))}, "b.hapt"),
    ("hapt-odd-haplotypes", ["info", "--hapt", "o.hapt", "--legend", "sim.legend"],
     {"o.hapt": _from("sim.hapt", _lines(lambda ls: ls[:-1]))}, "o.hapt"),
    # --- sample tables and id lists
    ("samples-no-sample-column", ["info", "--bfile", "sim", "--samples", "t.tsv"],
     {"t.tsv": "id\tpop\nx\tYRI\n"}, "t.tsv"),
    ("samples-unknown-ids", ["info", "--bfile", "sim", "--samples", "t.tsv"],
     {"t.tsv": "sample\tpop\tsuper_pop\nnobody\tYRI\tAFR\n"}, "--allow-unknown-samples"),
    ("samples-non-utf8", ["info", "--bfile", "sim", "--samples", "t.tsv"], {"t.tsv": LATIN1_TABLE}, "t.tsv"),
    ("samples-is-a-folder", ["info", "--bfile", "sim", "--samples", "d"], {"d/": None}, "d"),
    ("keep-missing-file", ["convert", "--bfile", "sim", "--format", "vcf", "--keep", "k.txt", "--out", "o"], {},
     "k.txt"),
    ("keep-nobody", ["convert", "--bfile", "sim", "--format", "vcf", "--keep", "k.txt", "--out", "o"],
     {"k.txt": "nobody\n"}, "--keep"),
    ("keep-non-utf8", ["convert", "--bfile", "sim", "--format", "vcf", "--keep", "k.txt", "--out", "o"],
     {"k.txt": b"sim_00000\xe9\n"}, "k.txt"),
    ("extract-non-utf8", ["convert", "--bfile", "sim", "--format", "vcf", "--extract", "e.txt", "--out", "o"],
     {"e.txt": b"rs\xe9\n"}, "e.txt"),
    ("evaluate-non-utf8-synthetic", ["evaluate", "--real", "sim", "--holdout", "sim.vcf.gz", "--synthetic", "bad.vcf",
                                     "--out", "e"], {"bad.vcf": BAD_NAME_VCF}, "bad.vcf"),
    ("select-non-utf8-ld-reference", ["select", "--bfile", "sim", "--samples", "sim.samples.tsv", "--case-pop", "YRI",
                                      "--control-pop", "CEU", "--ld-vcf", "bad.vcf", "--out", "l"],
     {"bad.vcf": BAD_NAME_VCF}, "--ld-vcf bad.vcf"),
    ("train-non-utf8-public-reference", PRIVATE + ["--epsilon", "4", "--dp-batch-size", "8", "--public-reference",
                                                   "bad.vcf"], {"bad.vcf": BAD_NAME_VCF}, "--public-reference"),
    ("extract-nothing", ["convert", "--bfile", "sim", "--format", "vcf", "--extract", "e.txt", "--out", "o"],
     {"e.txt": "rs_none\n"}, "--extract"),
    # --- flags
    ("two-inputs", ["info", "--bfile", "sim", "--vcf", "sim.vcf.gz"], {}, "exactly one input"),
    ("no-input", ["info"], {}, "exactly one input"),
    ("unknown-command", ["infoo", "--bfile", "sim"], {}, "--help"),
    ("unknown-option", ["info", "--bfile", "sim", "--outt", "o"], {}, "--help"),
    ("bad-format-choice", ["convert", "--bfile", "sim", "--format", "pgn", "--out", "o"], {}, "--help"),
    ("threads-zero-convert", ["convert", "--bfile", "sim", "--format", "vcf", "--threads", "0", "--out", "o"], {},
     "--threads"),
    ("threads-zero-train", ["train", "--bfile", "sim", "--threads", "0", "--out", "o"], {}, "--threads"),
    ("threads-not-a-number", ["simulate", "--threads", "two", "--out", "o"], {}, "--threads"),
    ("maf-above-half", ["convert", "--bfile", "sim", "--format", "vcf", "--maf", "0.7", "--out", "o"], {}, "--maf"),
    ("tag-column-unknown", ["convert", "--bfile", "sim", "--format", "hapt", "--tag-column", "nope", "--out", "o"],
     {}, "nope"),
    ("negative-seed", ["simulate", "--n", "30", "--seed", "-4", "--out", "o"], {}, "--seed"),
    ("simulate-n-zero", ["simulate", "--n", "0", "--out", "o"], {}, "--n"),
    ("simulate-unknown-population", ["simulate", "--n", "30", "--populations", "XYZ", "--out", "o"], {}, "XYZ"),
    # --- training options and privacy budgets
    ("train-delta-without-epsilon", ["train", "--bfile", "sim", "--delta", "1e-6", "--out", "t"], {}, "--epsilon"),
    ("epsilon-zero", PRIVATE + ["--epsilon", "0"], {}, "--epsilon"),
    ("epsilon-negative-small-cohort", PRIVATE + ["--epsilon", "-1"], {}, "--epsilon"),
    ("epsilon-nan", PRIVATE + ["--epsilon", "nan"], {}, "--epsilon"),
    ("delta-above-one-over-n", PRIVATE + ["--epsilon", "1", "--delta", "0.05"], {}, "--delta"),
    ("delta-one", PRIVATE + ["--epsilon", "1", "--delta", "1"], {}, "--delta"),
    ("epsilon-impossible", PRIVATE + ["--epsilon", "1e-9", "--dp-batch-size", "8"], {}, "--dit-epochs"),
    ("dp-batch-above-cohort", PRIVATE + ["--epsilon", "4"], {}, "--dp-batch-size"),
    ("train-bad-json-config", ["train", "--bfile", "sim", "--config", "{bad", "--out", "t"], {}, "--config"),
    ("train-unknown-config-field", PRIVATE[:-2] + ["--config", '{"nope": 1}', "--out", "t"], {}, "nope"),
    ("train-config-section-not-object", PRIVATE[:-2] + ["--config", '{"training": 5}', "--out", "t"], {}, "training"),
    ("train-config-wrong-type", PRIVATE[:-2] + ["--config", '{"training": {"vae_epochs": "ten"}}', "--out", "t"],
     {}, "vae_epochs"),
    ("train-config-not-utf8", ["train", "--bfile", "sim", "--config", "c.json", "--out", "t"],
     {"c.json": b'{"mode": "caf\xe9"}'}, "UTF-8"),
    ("train-zero-epochs", ["train", "--bfile", "sim", "--vae-epochs", "0", "--out", "t"], {}, "--vae-epochs"),
    ("train-resume-without-checkpoint", ["train", "--bfile", "sim", "--resume", "--out", "t"], {}, "--resume"),
    ("train-unknown-label-column", ["train", "--bfile", "sim", "--samples", "sim.samples.tsv", "--size", "tiny",
                                    "--label-column", "nope", "--out", "t"], {}, "nope"),
    # --- sampling
    ("sample-missing-model", ["sample", "--model", "nope.pt", "--n", "5", "--out", "s"], {}, "nope.pt"),
    ("sample-text-as-model", ["sample", "--model", "m.pt", "--n", "5", "--out", "s"], {"m.pt": "not a model\n"},
     "m.pt"),
    ("sample-unknown-label", ["sample", "--model", "model.pt", "--labels", "XYZ=5", "--out", "s"], {}, "XYZ"),
    ("sample-cases-without-phenotype-model", ["sample", "--model", "model.pt", "--cases", "3", "--controls", "3",
                                              "--out", "s"], {}, "--phenotype-column"),
    ("sample-zero-steps", ["sample", "--model", "model.pt", "--n", "5", "--steps", "0", "--out", "s"], {}, "--steps"),
    # --- evaluation and selection
    ("evaluate-missing-holdout", ["evaluate", "--real", "sim", "--holdout", "nope.vcf.gz", "--synthetic", "sim.hapt",
                                  "--out", "e"], {}, "nope.vcf.gz"),
    ("evaluate-unknown-format", ["evaluate", "--real", "sim", "--holdout", "sim.vcf.gz", "--synthetic", "x.txt",
                                 "--out", "e"], {"x.txt": "hello\n"}, "x.txt"),
    ("evaluate-bad-groups", EVAL + ["--gwas-groups", "AFR", "--out", "e"], {}, "--gwas-groups"),
    ("evaluate-bad-config", EVAL + ["--config", "c.json", "--out", "e"], {"c.json": "{oops"}, "c.json"),
    ("evaluate-other-variants", ["evaluate", "--real", "sim", "--holdout", "few.vcf", "--synthetic", "sim.hapt",
                                 "--out", "e"], {"few.vcf": vcf("a b", *RECORDS)}, "variants"),
    ("select-k-zero", ["select", "--bfile", "sim", "--samples", "sim.samples.tsv", "--case-pop", "YRI",
                       "--control-pop", "CEU", "--k", "0", "--out", "l"], {}, "--k"),
    ("select-case-pop-alone", ["select", "--bfile", "sim", "--case-pop", "YRI", "--out", "l"], {}, "--control-pop"),
    ("select-no-phenotype", ["select", "--bfile", "sim", "--pheno-column", "nope", "--out", "l"], {}, "nope"),
    ("select-negative-epsilon", ["select", "--bfile", "sim", "--samples", "sim.samples.tsv", "--case-pop", "YRI",
                                 "--control-pop", "CEU", "--epsilon", "-1", "--out", "l"], {}, "epsilon"),
    # --- --out: unwritable, through a file, over an input
    ("out-through-a-file", ["info", "--bfile", "sim", "--out", "sim.bim/o"], {}, "is a file"),
    ("out-through-a-file-train", ["train", "--bfile", "sim", "--out", "sim.bed/deep/t"], {}, "is a file"),
    ("out-unwritable", ["convert", "--bfile", "sim", "--format", "vcf", "--out", "locked/o"], {"locked/": "ro"},
     "--out"),
    ("out-ends-with-slash", ["convert", "--bfile", "sim", "--format", "vcf", "--out", "res/"], {}, "prefix"),
    ("out-output-is-a-folder", ["info", "--bfile", "sim", "--out", "o"], {"o.info.json/": None}, "folder"),
    ("out-over-vcf-input", ["convert", "--vcf", "x.vcf.gz", "--format", "vcf", "--maf", "0.2", "--out", "x"],
     {"x.vcf.gz": _from("sim.vcf.gz")}, "overwrite"),
    ("out-over-bfile-input", ["convert", "--bfile", "sim", "--format", "bed", "--out", "sim"], {}, "overwrite"),
    ("out-log-over-samples-input", ["info", "--bfile", "sim", "--samples", "o.log", "--out", "o"],
     {"o.log": _from("sim.samples.tsv")}, "overwrite"),
    ("out-over-input-through-symlink", ["convert", "--bfile", "sim", "--format", "bed", "--out", "here/sim"],
     {"here": "->."}, "overwrite"),
    ("out-over-input-relative-path", ["convert", "--hapt", "sim.hapt", "--legend", "sim.legend", "--format", "hapt",
                                      "--out", "sub/../sim"], {"sub/": None}, "overwrite"),
    ("out-over-hard-link", ["convert", "--vcf", "sim.vcf.gz", "--format", "vcf", "--out", "h"],
     {"h.vcf.gz": "=>sim.vcf.gz"}, "overwrite"),
    ("out-log-over-model", ["sample", "--model", "s.log", "--n", "5", "--out", "s"], {"s.log": _from("model.pt")},
     "overwrite"),
    ("out-over-evaluate-config", EVAL + ["--config", "e.json", "--out", "e"], {"e.json": "{}"}, "overwrite"),
    ("out-over-select-samples", ["select", "--bfile", "sim", "--samples", "l.gwas.tsv", "--out", "l"],
     {"l.gwas.tsv": _from("sim.samples.tsv")}, "overwrite"),
    ("out-over-train-samples", ["train", "--bfile", "sim", "--samples", "t.train.json", "--out", "t"],
     {"t.train.json": _from("sim.samples.tsv")}, "overwrite"),
    ("demo-out-is-a-file", ["demo", "--out", "sim.bed"], {}, "is a file"),
    ("evaluate-threads-zero", EVAL + ["--threads", "0", "--out", "e"], {}, "--threads"),
    ("missing-genotypes-to-hapt", ["convert", "--vcf", "m.vcf", "--format", "hapt", "--out", "o"],
     {"m.vcf": vcf("a b", "1 10 rs1 A G . . . GT 0|1 .|.", "1 20 rs2 C T . . . GT 1|1 0|0")}, "--format"),
    ("fam-extra-line", ["info", "--bfile", "fx"], bfile("fx", fam=_from("sim.fam", lambda b: b + b"x y 0 0 1 -9\n")),
     "fx"),
    ("samples-duplicate-ids", ["info", "--bfile", "sim", "--samples", "t.tsv"],
     {"t.tsv": _from("sim.samples.tsv", _lines(lambda ls: ls + ls[1:2]))}, "t.tsv"),
]

HINT = re.compile(r"\b(re-\w+|give|use|pass|choose|drop|add|remove|lower|raise|check|split|fix|rename|train|set|"
                  r"restrict|recode|keep|see|put|select|delete|leave|resume|move|needs?|must)\b", re.IGNORECASE)


# ---------------------------------------------------------------------------------- the base folder
@pytest.fixture(scope="module")
def base(small, trained, tmp_path_factory):
    """The files every case starts from (written once)."""
    from genosynth.io import write_cohort
    from genosynth.io.samples import write_sample_table

    folder = tmp_path_factory.mktemp("hostile_base")
    prefix = str(folder / "sim")
    write_cohort(small, prefix, "bed")
    write_cohort(small, prefix, "vcf")
    write_cohort(small, prefix, "hapt")
    write_sample_table(small, f"{prefix}.samples.tsv")
    shutil.copy(trained[1], folder / "model.pt")
    return folder


def _make(folder, files: dict) -> None:
    for name, content in files.items():
        path = folder / name.rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):  # a folder; "ro": one that cannot be written
            path.mkdir(exist_ok=True)
            if content == "ro":
                path.chmod(0o555)
        elif isinstance(content, str) and content.startswith("->"):
            os.symlink(content[2:], path)
        elif isinstance(content, str) and content.startswith("=>"):
            os.link(folder / content[2:], path)
        else:
            content = content(folder) if callable(content) else content
            path.write_bytes(content.encode() if isinstance(content, str) else content)


def _snapshot(folder) -> dict[str, bytes]:
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            if os.path.isfile(path):
                with open(path, "rb") as fh:
                    found[os.path.relpath(path, folder)] = fh.read()
    return found


@pytest.mark.parametrize("argv, files, expect",
                         [pytest.param(a, f, e, id=i) for i, a, f, e in CASES])
def test_hostile_input_fails_cleanly(argv, files, expect, base, tmp_path, monkeypatch, capsys):
    if "locked/" in files and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; test_every_command_refuses_an_out_it_cannot_write "
                    "covers it through /proc")
    folder = tmp_path / "case"
    shutil.copytree(base, folder)
    _make(folder, files)
    before = _snapshot(folder)
    monkeypatch.chdir(folder)
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("Error: ") and expect in lines[0], lines[0]
    assert HINT.search(lines[0].split(":", 1)[1]), f"no fix named: {lines[0]}"
    after = _snapshot(folder)
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert not changed, f"inputs changed: {changed}"
    new = sorted(set(after) - set(before))
    assert all(n.endswith(".log") for n in new), f"outputs left behind: {new}"


def test_table_is_large_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


#: The least each command parses, so that only --out is wrong.
MINIMAL = {"info": ["--vcf", "x.vcf"], "convert": ["--vcf", "x.vcf", "--format", "vcf"], "simulate": [],
           "train": ["--vcf", "x.vcf"], "sample": ["--model", "m.pt"], "demo": [],
           "evaluate": ["--real", "r", "--holdout", "h", "--synthetic", "s"], "select": ["--vcf", "x.vcf"]}


@pytest.mark.parametrize("command", sorted(MINIMAL))
@pytest.mark.parametrize("out", ["/proc/genosynth-hostile/o", "regular.txt/o"], ids=["unwritable", "through-file"])
def test_every_command_refuses_an_out_it_cannot_write(command, out, tmp_path, monkeypatch, capsys):
    """``--out`` in a folder nobody may write (``/proc`` refuses new files, root included) or through a file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "regular.txt").write_text("keep me\n")
    assert main([command, *MINIMAL[command], "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and out in err and "--out" in err, err
    assert ("can write" in err) if out.startswith("/proc") else ("is a file, not a folder" in err), err
    assert sorted(os.listdir(tmp_path)) == ["regular.txt"] and (tmp_path / "regular.txt").read_text() == "keep me\n"


def test_atomic_outputs_refuse_a_folder_and_leave_no_temporary_file(tmp_path):
    """A final path that is a folder is refused before writing; a rename that fails removes every temporary file."""
    from genosynth.errors import InputError
    from genosynth.io.atomic import atomic_outputs

    (tmp_path / "b.txt").mkdir()
    with pytest.raises(InputError, match="is a folder"), atomic_outputs([tmp_path / "a.txt", tmp_path / "b.txt"]):
        pass
    (tmp_path / "a.txt").write_text("a file, not a folder")
    with pytest.raises(InputError, match="cannot make the folder"), atomic_outputs([tmp_path / "a.txt" / "x"]):
        pass
    with pytest.raises(IsADirectoryError), atomic_outputs([tmp_path / "c.txt"]) as (tmp,):
        with open(tmp, "w") as fh:
            fh.write("c")
        (tmp_path / "c.txt" / "inner").mkdir(parents=True)  # a folder appears where the file goes
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
