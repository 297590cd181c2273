"""Prompt-set loaders: parsers, the pinned registry against the shared copies, and the downloader.

The real files are research data that mmh-bench never ships; tests read the copies under
../shared/data/sd_prompts when present and skip otherwise. The downloader is tested against a
local HTTP server, never the network.
"""
from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import pytest

from mmh_bench.task.data import prompts as P

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sd_prompts"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared prompt copies not present")

EXPECTED = {"webster500": 500, "nemo-memorized500": 500, "nemo-unmemorized500": 500,
            "coco2014-val10k": 10000, "matching-verbatim86": 86, "jeon-sd1-mem500": 500,
            "jeon-sd1-nmem500": 500, "jeon-sd2-mem219": 219, "ren-sd1-mem345": 345, "ren-nomem500": 500}


# -- parsers -----------------------------------------------------------------------------------------
def test_txt_last_line_may_lack_a_newline():
    assert P.parse_prompts(b"a\nb", "txt")[0] == ["a", "b"]
    assert P.parse_prompts(b"a\nb\n", "txt")[0] == ["a", "b"]
    assert P.parse_prompts(b"a\r\nb\r\n", "txt")[0] == ["a", "b"]
    with pytest.raises(P.PromptSetError, match="empty prompt"):
        P.parse_prompts(b"a\n\nb", "txt")


def test_csv_keeps_quotes_and_reads_types():
    data = (';Caption;URL;type;mean_sscd;max_sscd;Index\n'
            '0;"""Listen to"" it";u;VM;0.9;0.9;1\n1;plain; caption;u;TM;0.1;0.2;2\n')
    with pytest.raises(P.PromptSetError, match="column count"):  # an unquoted ';' inside a caption
        P.parse_prompts(data.encode(), "csv")
    data = data.replace("plain; caption", '"plain; caption"')
    texts, types = P.parse_prompts(data.encode(), "csv")
    assert texts == ['"Listen to" it', "plain; caption"] and types == ["VM", "TM"]
    texts, types = P.parse_prompts(b";Caption;URL;Index\n0;a cat;;0000\n", "csv")
    assert texts == ["a cat"] and types is None
    with pytest.raises(P.PromptSetError, match="VM/TM"):
        P.parse_prompts(b";Caption;type\n0;x;XX\n", "csv")
    with pytest.raises(P.PromptSetError, match="Caption"):
        P.parse_prompts(b"a;b\n1;2\n", "csv")


def test_jsonl_and_json_list():
    assert P.parse_prompts(b'{"caption": "a", "index": 1}\n\n{"caption": "b"}\n', "jsonl")[0] == ["a", "b"]
    with pytest.raises(P.PromptSetError, match="line 1"):
        P.parse_prompts(b'{"text": "a"}\n', "jsonl")
    assert P.parse_prompts('["é", "b"]'.encode(), "json")[0] == ["é", "b"]
    with pytest.raises(P.PromptSetError, match="list of strings"):
        P.parse_prompts(b'{"a": 1}', "json")
    with pytest.raises(P.PromptSetError, match="format"):
        P.parse_prompts(b"", "yaml")


def test_registry_urls_are_pinned_to_commits():
    assert set(P.PROMPT_FILES) == set(EXPECTED)
    for pf in P.PROMPT_FILES.values():
        assert pf.url.startswith("https://raw.githubusercontent.com/") and f"/{pf.commit}/" in pf.url
        assert len(pf.commit) == 40 and len(pf.sha256) == 64 and pf.fmt in P.FORMATS
        assert pf.n == EXPECTED[pf.name]
    with pytest.raises(P.PromptSetError, match="unknown prompt set"):
        P.load_prompt_set("no-such-set")


# -- the real files ----------------------------------------------------------------------------------
@needs_shared
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_copy_matches_pin_and_count(name, tmp_path):
    pf = P.PROMPT_FILES[name]
    assert hashlib.sha256((SHARED / pf.filename).read_bytes()).hexdigest() == pf.sha256
    ps = P.load_prompt_set(name, local=SHARED, cache_dir=tmp_path, download=False)
    assert len(ps) == EXPECTED[name] and ps.sha256 == pf.sha256
    assert all(t.strip() for t in ps.texts)


@needs_shared
def test_shared_sets_agree_with_each_other(monkeypatch, tmp_path):
    monkeypatch.setenv(P.ENV_LOCAL, str(SHARED))  # the environment variable route
    load = partial(P.load_prompt_set, cache_dir=tmp_path, download=False)
    web, nemo, jeon = load("webster500"), load("nemo-memorized500"), load("jeon-sd1-mem500")
    assert web.texts == nemo.texts == jeon.texts  # the same 500 captions, in the same order
    assert nemo.types.count("VM") == 112 and nemo.types.count("TM") == 388
    assert web.types is None
    assert set(load("matching-verbatim86").texts) <= set(web.texts)
    assert set(load("ren-sd1-mem345").texts) <= set(web.texts)
    neg = load("nemo-unmemorized500")
    assert not set(neg.texts) & set(web.texts) and neg.types is None
    assert len(set(load("jeon-sd1-nmem500").texts) & set(load("ren-nomem500").texts)) == 99


@needs_shared
def test_jeon_negative_blocks_are_what_the_registry_says(tmp_path):
    """The origins behind AUROC per negative source, checked against the file itself."""
    load = partial(P.load_prompt_set, local=SHARED, cache_dir=tmp_path, download=False)
    neg, ren = load("jeon-sd1-nmem500"), set(load("ren-nomem500").texts)
    by = {}
    for text, origin in zip(neg.texts, neg.origins):
        by.setdefault(origin, []).append(text)
    assert {k: len(v) for k, v in by.items()} == {"coco": 200, "lexica": 100, "tuxemon": 100, "gpt-4": 100}
    assert all(t.startswith("a tuxemon cartoon") for t in by["tuxemon"])
    assert not any("tuxemon" in t for k, v in by.items() if k != "tuxemon" for t in v)
    assert sum(t in ren for t in by["gpt-4"]) == 99 and not any(t in ren for k, v in by.items()
                                                                   if k != "gpt-4" for t in v)
    assert set(load("nemo-unmemorized500").origins) == {"laion"}


@needs_shared
def test_local_copy_with_a_wrong_checksum_is_refused(tmp_path):
    bad = tmp_path / "local"
    bad.mkdir()
    (bad / "jeon_sd2_mem.txt").write_bytes((SHARED / "jeon_sd2_mem.txt").read_bytes() + b"\nextra")
    with pytest.raises(P.PromptSetError, match="sha256"):
        P.load_prompt_set("jeon-sd2-mem219", local=bad, cache_dir=tmp_path / "cache", download=False)


# -- downloads ---------------------------------------------------------------------------------------
@pytest.fixture()
def server(tmp_path):
    """A local HTTP server over ``tmp_path/www`` that counts requests."""
    root = tmp_path / "www"
    root.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *a):  # keep test output quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_sha256_then_caches(server, tmp_path):
    root, base, hits = server
    body = b"first prompt\nsecond prompt"
    (root / "p.txt").write_bytes(body)
    good = hashlib.sha256(body).hexdigest()
    pf = P.PromptFile("test-set", "p.txt", "o/r", "0" * 40, "p.txt", good, "txt", 2)
    cache = tmp_path / "cache"

    wrong = P.PromptFile("test-set", "p.txt", "o/r", "0" * 40, "p.txt", "f" * 64, "txt", 2)
    with pytest.raises(P.PromptSetError, match="sha256 mismatch"):
        P.prompt_file(wrong, cache_dir=cache, url=f"{base}/p.txt")
    assert not (cache / "p.txt").exists()  # nothing unverified is kept

    path = P.prompt_file(pf, cache_dir=cache, url=f"{base}/p.txt")
    assert path == cache / "p.txt" and path.read_bytes() == body and len(hits) == 2
    # cached: no further request, and downloads may be off
    assert P.prompt_file(pf, cache_dir=cache, url=f"{base}/p.txt", download=False) == path
    assert len(hits) == 2
    # a corrupted cache entry is fetched again
    path.write_bytes(b"tampered")
    assert P.prompt_file(pf, cache_dir=cache, url=f"{base}/p.txt").read_bytes() == body
    assert len(hits) == 3


def test_download_errors_are_clear(server, tmp_path):
    _, base, _ = server
    with pytest.raises(P.PromptSetError, match="cannot download"):
        P.fetch(f"{base}/missing.txt", "0" * 64, tmp_path / "x.txt")
    pf = P.PromptFile("t", "x.txt", "o/r", "0" * 40, "x.txt", "0" * 64, "txt", 1)
    with pytest.raises(P.PromptSetError, match="downloads are off"):
        P.prompt_file(pf, cache_dir=tmp_path / "c", download=False)


def test_custom_prompt_file_is_pinned_by_sha256(tmp_path):
    from mmh_bench.task.spec_models import PromptFileRef
    f = tmp_path / "mine.txt"
    f.write_text("one\ntwo\n")
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    ps = P.resolve_prompt_set(PromptFileRef(file="mine.txt", sha256=sha, format="txt"), base=tmp_path)
    assert ps.texts == ("one", "two") and ps.sha256 == sha
    with pytest.raises(P.PromptSetError, match="expected"):
        P.resolve_prompt_set(PromptFileRef(file=str(f), sha256="0" * 64, format="txt"))
    with pytest.raises(P.PromptSetError, match="registered name"):
        P.resolve_prompt_set({"file": str(f)})
    assert P.sha256_texts(["a", "b"]) != P.sha256_texts(["ab"])


# -- offline copies under upstream or other names (issue 18, item 7) ---------------------------------
def test_local_copy_under_its_upstream_name_or_any_name_is_found(tmp_path, monkeypatch):
    data = b"a cat\na dog"
    pf = P.PromptFile("toy", "toy_registry.txt", "o/r", "0" * 40, "prompts/sd1_toy.txt",
                      hashlib.sha256(data).hexdigest(), "txt", 2)
    assert pf.upstream_name == "sd1_toy.txt" and pf.names() == ("toy_registry.txt", "sd1_toy.txt")
    folder = tmp_path / "copies"
    folder.mkdir()
    (folder / "sd1_toy.txt").write_bytes(data)
    monkeypatch.setenv(P.ENV_LOCAL, str(folder))
    assert P.prompt_file(pf, cache_dir=tmp_path / "c", download=False) == folder / "sd1_toy.txt"
    (folder / "sd1_toy.txt").rename(folder / "saved by hand.txt")  # any name: matched by sha256
    assert P.prompt_file(pf, cache_dir=tmp_path / "c", download=False) == folder / "saved by hand.txt"
    (folder / "sd1_toy.txt").write_bytes(b"a cat\na cow")  # a wrong file under a known name is an error
    with pytest.raises(P.PromptSetError, match="sha256"):
        P.prompt_file(pf, cache_dir=tmp_path / "c", download=False)


def test_missing_file_error_names_what_it_wants(tmp_path, monkeypatch):
    monkeypatch.setenv(P.ENV_LOCAL, str(tmp_path))
    pf = P.PROMPT_FILES["jeon-sd1-mem500"]
    with pytest.raises(P.PromptSetError) as err:
        P.prompt_file(pf, cache_dir=tmp_path / "c", download=False)
    msg = str(err.value)
    assert "jeon_sd1_mem.txt or sd1_mem.txt" in msg and pf.sha256 in msg and P.ENV_LOCAL in msg
    listing = P.expected_files().splitlines()
    assert len(listing) == len(P.PROMPT_FILES) and any("sdv1_500_memorized.jsonl" in ln for ln in listing)


@needs_shared
def test_shared_copies_renamed_to_upstream_names_verify(tmp_path):
    folder = tmp_path / "upstream"
    folder.mkdir()
    for pf in P.PROMPT_FILES.values():
        (folder / pf.upstream_name).write_bytes((SHARED / pf.filename).read_bytes())
    assert len({pf.upstream_name for pf in P.PROMPT_FILES.values()}) == len(P.PROMPT_FILES)
    for name, n in EXPECTED.items():
        ps = P.load_prompt_set(name, local=folder, cache_dir=tmp_path / "c", download=False)
        assert len(ps) == n and ps.source == str(folder / P.PROMPT_FILES[name].upstream_name)
