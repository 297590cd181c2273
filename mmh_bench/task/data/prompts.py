"""Public Stable Diffusion prompt sets: pinned URLs, sha256-verified downloads, a local cache, parsers.

The prompt files are research data owned by their authors and are never shipped with mmh-bench.
Each is fetched once from a URL pinned to a commit, checked against its sha256 and cached under
``<mmh-bench cache>/sd_prompts/``. A local copy (a folder holding the files under the names below,
given as an argument or through ``$MMH_BENCH_SD_PROMPTS``) is used instead when present, after the
same checksum test. In such a folder a file is found under the registry's name
(:attr:`PromptFile.filename`), under its upstream name (the last part of :attr:`PromptFile.path`,
e.g. ``sd1_mem.txt``), or under any name at all when its sha256 is the pinned one; a file under
one of the two names whose checksum differs is an error, never a silent fallback.
:func:`expected_files` lists both names of every file.

Formats: ``jsonl`` (one JSON object a line with a ``caption``), ``csv`` (';'-separated with a
header holding ``Caption`` and optionally ``type`` = VM/TM), ``txt`` (one prompt a line; the last
line may lack a newline), ``json`` (a JSON list of strings).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import urllib.error
import urllib.request
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from mmh_bench.common.cache import default_cache_dir
from mmh_bench.files import atomic_write_bytes, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from mmh_bench.task.spec_models import PromptFileRef

#: environment variable naming a folder with local copies of the prompt files
ENV_LOCAL = "MMH_BENCH_SD_PROMPTS"
FORMATS = ("jsonl", "csv", "txt", "json")


class PromptSetError(RuntimeError):
    """A prompt file could not be had, failed its checksum, or did not parse as promised."""


@dataclass(frozen=True)
class PromptFile:
    """One pinned public prompt file: where it lives, what it must hash to, how to read it."""

    name: str
    filename: str
    repo: str
    commit: str
    path: str
    sha256: str
    fmt: str
    n: int
    description: str = ""
    #: where the prompts come from, for AUROC per negative source: one name for the whole file,
    #: or ``(name, first line, end line)`` blocks of a file that concatenates several sources
    origin: str | tuple[tuple[str, int, int], ...] = ""

    def origins(self, n: int) -> tuple[str, ...]:
        """The origin of each of the file's ``n`` prompts ("" where unknown)."""
        if isinstance(self.origin, str):
            return (self.origin,) * n
        out = [""] * n
        for name, lo, hi in self.origin:
            out[lo:hi] = [name] * (min(hi, n) - lo)
        return tuple(out)

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"

    @property
    def upstream_name(self) -> str:
        """The file's name in its source repository."""
        return self.path.rsplit("/", 1)[-1]

    def names(self) -> tuple[str, ...]:
        """Names a local copy may have: the registry's, then the upstream one."""
        return tuple(dict.fromkeys((self.filename, self.upstream_name)))


_LAYER6 = ("layer6ai-labs/diffusion_memorization", "084b8b4b8689a880b8e515a166dd2677f24116b7")
_NEMO = ("ml-research/localizing_memorization_in_diffusion_models", "f952eded64fca0bcf42e0bb3be9a01d64653cfdb")
_JEON = ("Dongjae0324/sharpness_memorization_diffusion", "f4ee4b814047ab71561aa6f1fc2af1a4efaf0a45")
_REN = ("chunsanHong/MemBench_code", "f22a0fdcd24fa0f4a43bf7b9a8e42c8c78af302f")


def _pf(name: str, filename: str, src: tuple[str, str], path: str, sha: str, fmt: str, n: int,
        desc: str, origin: str | tuple[tuple[str, int, int], ...] = "") -> PromptFile:
    return PromptFile(name, filename, src[0], src[1], path, sha, fmt, n, desc, origin)


#: Jeon et al.'s negatives file concatenates four sources in blocks, read off the file itself:
#: lines 0-199 are COCO-style captions, 200-299 Lexica prompts, 300-399 all begin "a tuxemon
#: cartoon", and 400-499 are exactly the GPT-4 prompts of Ren et al.'s ``ren-nomem500`` (99 of 100
#: verbatim; tests/test_prompts.py checks these facts on the real file when it is present)
JEON_NEGATIVE_BLOCKS = (("coco", 0, 200), ("lexica", 200, 300), ("tuxemon", 300, 400), ("gpt-4", 400, 500))


#: registry name -> pinned file. Names are what task specs use in ``[data]``.
PROMPT_FILES: dict[str, PromptFile] = {p.name: p for p in [
    _pf("webster500", "webster500_memorized.jsonl", _LAYER6, "examples/sdv1_500_memorized.jsonl",
        "8eb16c6ff1c7195cddf26b3207bdc7c6a905a20162c6070d79fe60336a525c60", "jsonl", 500,
        "the 500 SD v1 memorized prompts (Webster 2023, as released by Wen et al. 2024)"),
    _pf("nemo-memorized500", "nemo_memorized_laion_prompts.csv", _NEMO, "prompts/memorized_laion_prompts.csv",
        "0b527a5965dc463e7a3e0d234ff7fd5489b1a76869c456dbb209dc753cb4af25", "csv", 500,
        "the same 500 prompts with per-prompt VM/TM type (Hintersdorf et al. 2024, NeMo)"),
    _pf("nemo-unmemorized500", "nemo_unmemorized_laion_prompts.csv", _NEMO, "prompts/unmemorized_laion_prompts.csv",
        "f453b418cc157864baacbf68d97447273feac41e8066b2ead6b307bf795988e1", "csv", 500,
        "500 non-memorized LAION prompts", origin="laion"),
    _pf("coco2014-val10k", "coco2014_val_10000.csv", _NEMO, "prompts/coco2014_val_10000.csv",
        "5445e449c60fd6b326a05c79a683c4d64620b0330a372de843eb6b9dbe5901e3", "csv", 10000,
        "10,000 COCO 2014 validation captions", origin="coco"),
    _pf("matching-verbatim86", "matching_verbatim86.json", _LAYER6, "match_verbatim_captions.json",
        "97bd5d75932e26d56edb84870ab43f567dfbf081f94a4798b1444c905b891f87", "json", 86,
        "86 matching-verbatim prompts (a subset of the 500) from the MMH paper's SD figure"),
    _pf("jeon-sd1-mem500", "jeon_sd1_mem.txt", _JEON, "prompts/sd1_mem.txt",
        "6f11239c621a7846979170c79d79f86a31441e044a7bc0b5d952ba8a5ca0fb56", "txt", 500,
        "the 500 SD v1 memorized prompts as used by Jeon et al. 2025"),
    _pf("jeon-sd1-nmem500", "jeon_sd1_nmem.txt", _JEON, "prompts/sd1_nmem.txt",
        "628796e195391501591859f55e249cca70e8fcaa7ceb33aac1d753fbfe4d8a4c", "txt", 500,
        "Jeon et al.'s 500 negatives (COCO, Lexica, Tuxemon and GPT-4 style prompts)",
        origin=JEON_NEGATIVE_BLOCKS),
    _pf("jeon-sd2-mem219", "jeon_sd2_mem.txt", _JEON, "prompts/sd2_mem.txt",
        "02f212d64767b4f066ca1c9ddc161a6ea5cf717aadf7f45e44bfe21856563e8d", "txt", 219,
        "219 SD v2 memorized prompts"),
    _pf("ren-sd1-mem345", "ren_sd1_mem345.txt", _REN, "MemAttn/prompt/sd1_mem345.txt",
        "70f370c4728aecd18e0db95dc58e9741b0f1a278dbfddb31d7d0754f69f8d069", "txt", 345,
        "the 345-prompt subset used by Ren et al. 2024"),
    _pf("ren-nomem500", "ren_nomem500.txt", _REN, "MemAttn/prompt/group_nomem500.txt",
        "4e0de75ae37b4fb2f8676026d876d9f4b03267a90041af4069d74b912e588c2d", "txt", 500,
        "Ren et al.'s 500 GPT-4-style non-memorized prompts", origin="gpt-4"),
]}


@dataclass(frozen=True)
class PromptSet:
    """Parsed prompts; ``types`` holds per-prompt VM/TM labels when the file carries them."""

    name: str
    texts: tuple[str, ...]
    sha256: str
    types: tuple[str, ...] | None = None
    source: str = ""
    #: each prompt's origin (e.g. "coco", "laion"; "" where unknown), from the registry
    origins: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def origin_of(self) -> dict[str, str]:
        """Prompt -> origin ("" where the set does not say)."""
        return dict(zip(self.texts, self.origins or ("",) * len(self.texts)))

    def type_of(self) -> dict[str, str]:
        """Caption -> type, for labelling other sets that contain the same captions."""
        if self.types is None:
            raise PromptSetError(f"prompt set {self.name!r} carries no VM/TM types")
        return dict(zip(self.texts, self.types))


# -- fetching ------------------------------------------------------------------------------------
def prompt_cache_dir(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return default_cache_dir() / "sd_prompts"


def fetch(url: str, sha256: str, dest: str | Path, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` only if its bytes hash to ``sha256`` (written atomically)."""
    dest = Path(dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (pinned URL)
            data = resp.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PromptSetError(f"cannot download {url}: {exc}. Put a copy of the file in a folder and "
                             f"point ${ENV_LOCAL} at it to work offline") from None
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise PromptSetError(f"sha256 mismatch for {url}: got {got}, expected {sha256}; "
                             "the file was not saved")
    atomic_write_bytes(dest, data)
    return dest


def _local_folders(local: str | Path | None) -> list[Path]:
    return [Path(b) for b in (local, os.environ.get(ENV_LOCAL) or None) if b is not None]


def _find_local(pf: PromptFile, base: Path) -> Path | None:
    """A verified copy of ``pf`` in ``base`` (a file, or a folder searched by name, then by sha256)."""
    if base.is_file():
        named = [base]
    else:
        named = [base / n for n in pf.names() if (base / n).is_file()]
    for cand in named:
        got = sha256_file(cand)
        if got != pf.sha256:
            raise PromptSetError(f"local copy {cand} has sha256 {got}, expected {pf.sha256} "
                                 f"(pinned {pf.url})")
        return cand
    if base.is_dir():  # a correct copy under another name
        for cand in sorted(base.iterdir()):
            if cand.is_file() and cand.stat().st_size < 50_000_000 and sha256_file(cand) == pf.sha256:
                return cand
    return None


def expected_files(names: Sequence[str] | None = None) -> str:
    """One line per prompt file: registry name, file names accepted in a local folder, sha256."""
    entries = [get_prompt_file(n) for n in names] if names is not None else list(PROMPT_FILES.values())
    return "\n".join(f"{pf.name}: {' or '.join(pf.names())} (sha256 {pf.sha256}, {pf.url})" for pf in entries)


def prompt_file(entry: str | PromptFile, *, local: str | Path | None = None,
                cache_dir: str | Path | None = None, download: bool = True, url: str | None = None) -> Path:
    """Path of a verified copy of a pinned prompt file: local copy, then cache, then download
    (from ``url`` when given, e.g. a mirror; the pinned sha256 is checked either way)."""
    pf = get_prompt_file(entry) if isinstance(entry, str) else entry
    folders = _local_folders(local)
    for base in folders:
        found = _find_local(pf, base)
        if found is not None:
            return found
    cached = prompt_cache_dir(cache_dir) / pf.filename
    if cached.is_file() and sha256_file(cached) == pf.sha256:
        return cached
    if not download:
        where = ", ".join(str(b) for b in folders) or f"no local folder (${ENV_LOCAL} is unset)"
        raise PromptSetError(f"prompt set {pf.name!r} is neither cached nor in {where}, and downloads are "
                             f"off: put {' or '.join(pf.names())} (sha256 {pf.sha256}, from {pf.url}) "
                             f"in a folder and point ${ENV_LOCAL} at it")
    try:
        return fetch(url or pf.url, pf.sha256, cached)
    except PromptSetError as exc:
        raise PromptSetError(f"{exc} (prompt set {pf.name!r} wants {' or '.join(pf.names())}, "
                             f"sha256 {pf.sha256})") from None


def get_prompt_file(name: str) -> PromptFile:
    if name not in PROMPT_FILES:
        raise PromptSetError(f"unknown prompt set {name!r}; known: {', '.join(sorted(PROMPT_FILES))}")
    return PROMPT_FILES[name]


# -- parsing -------------------------------------------------------------------------------------
def parse_prompts(data: bytes, fmt: str, where: str = "<bytes>") -> tuple[list[str], list[str] | None]:
    """Prompts (and VM/TM types when present) from a file's bytes in one of :data:`FORMATS`."""
    text = data.decode("utf-8")
    types: list[str] | None = None
    if fmt == "jsonl":
        texts = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                texts.append(str(json.loads(line)["caption"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise PromptSetError(f"{where}: line {i} is not a JSON object with a caption ({exc})") from None
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
        if not rows or "Caption" not in rows[0]:
            raise PromptSetError(f"{where}: expected a ';'-separated header with a 'Caption' column")
        head = rows[0]
        ci = head.index("Caption")
        ti = head.index("type") if "type" in head else None
        body = [r for r in rows[1:] if r]
        if any(len(r) != len(head) for r in body):
            raise PromptSetError(f"{where}: rows with a column count other than the header's {len(head)}")
        texts = [r[ci] for r in body]
        if ti is not None:
            types = [r[ti] for r in body]
            bad = sorted(set(types) - {"VM", "TM"})
            if bad:
                raise PromptSetError(f"{where}: unknown memorization types {bad} (expected VM/TM)")
    elif fmt == "txt":
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # a final newline ends the last line; it does not start an empty one
        texts = [ln.rstrip("\r") for ln in lines]
        empty = [i + 1 for i, ln in enumerate(texts) if not ln.strip()]
        if empty:
            raise PromptSetError(f"{where}: empty prompt on line(s) {empty[:5]}")
    elif fmt == "json":
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise PromptSetError(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(obj, list) or not all(isinstance(s, str) for s in obj):
            raise PromptSetError(f"{where}: expected a JSON list of strings")
        texts = list(obj)
    else:
        raise PromptSetError(f"unknown prompt file format {fmt!r}; known: {FORMATS}")
    return texts, types


def _read(path: Path, fmt: str, name: str, sha: str, n: int | None) -> PromptSet:
    data = path.read_bytes()
    texts, types = parse_prompts(data, fmt, str(path))
    if n is not None and len(texts) != n:
        raise PromptSetError(f"{path}: parsed {len(texts)} prompts, expected {n}")
    return PromptSet(name=name, texts=tuple(texts), sha256=sha,
                     types=tuple(types) if types is not None else None, source=str(path))


def load_prompt_set(name: str, *, local: str | Path | None = None, cache_dir: str | Path | None = None,
                    download: bool = True) -> PromptSet:
    """A registered prompt set, verified and parsed (see :data:`PROMPT_FILES`)."""
    pf = get_prompt_file(name)
    path = prompt_file(pf, local=local, cache_dir=cache_dir, download=download)
    out = _read(path, pf.fmt, pf.name, pf.sha256, pf.n)
    return dataclasses.replace(out, origins=pf.origins(len(out)))


def load_custom_prompt_set(file: str | Path, sha256: str, fmt: str, name: str | None = None) -> PromptSet:
    """A user's own prompt file, pinned by its sha256 like the public ones."""
    path = Path(file)
    if not path.is_file():
        raise PromptSetError(f"prompt file {path} does not exist")
    got = sha256_file(path)
    if got != sha256:
        raise PromptSetError(f"{path} has sha256 {got}, expected {sha256}")
    return _read(path, fmt, name or path.name, sha256, None)


def resolve_prompt_set(ref: str | PromptFileRef, *, base: Path | None = None,
                       local: str | Path | None = None, cache_dir: str | Path | None = None,
                       download: bool = True) -> PromptSet:
    """A task spec's reference: a registered name, or a pinned file (``file``, ``sha256``,
    ``format``, optional ``name``; the file relative to ``base``)."""
    if isinstance(ref, str):
        return load_prompt_set(ref, local=local, cache_dir=cache_dir, download=download)
    try:
        path, sha, fmt, name = Path(ref.file), ref.sha256, ref.format, ref.name
    except AttributeError:
        raise PromptSetError(f"a prompt set is a registered name or a table with file, sha256 and format; "
                             f"got {ref!r}") from None
    if not path.is_absolute() and base is not None:
        path = base / path
    return load_custom_prompt_set(path, sha, fmt, name)


def sha256_texts(texts: Sequence[str]) -> str:
    """Hash of an ordered prompt list (what a task actually used after subsetting)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()
