"""Task specs are closed and typed: every shipped spec validates, every kind of mistake is refused
with a message naming the file, the section and the key, and the reference doc matches the models."""
import copy
import tomllib
from pathlib import Path

import pytest

from mmh_bench.cli.main import main
from mmh_bench.task.data.synthetic import COMPONENTS
from mmh_bench.task.instance import SUBTYPE_CODE
from mmh_bench.task.spec import SpecError, load_spec, parse_spec
from mmh_bench.task.spec_models import COMPONENT_MODELS, Balance, PromptBalance, SDModel
from mmh_bench.task.spec_reference import reference

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*ROOT.glob("tasks/*.toml"), *ROOT.glob("tests/data/*.toml"), *ROOT.glob("mmh_bench/task/data/*.toml")])
TINY = ROOT / "tests" / "data" / "tiny.toml"


def _raw(path: Path) -> dict:
    return tomllib.loads(path.read_text())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_spec_validates(path):
    assert load_spec(path).name == path.stem


def test_shipped_specs_cover_every_builder_and_component_kind():
    raws = [_raw(p) for p in SHIPPED]
    assert {r["builder"] for r in raws} == {"synthetic", "lid", "image", "text-to-image", "stable-diffusion"}
    kinds = {c["kind"] for r in raws for c in r.get("data", {}).get("components", [])}
    assert kinds == set(COMPONENTS) == set(COMPONENT_MODELS)


def _problem(raw: dict, path: str = "tasks/x.toml") -> str:
    with pytest.raises(SpecError) as exc:
        parse_spec(raw, path)
    return str(exc.value)


def _tiny(**changes) -> dict:
    raw = _raw(TINY)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = raw
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is None:
            del node[key]
        else:
            node[key] = value
    return raw


@pytest.mark.parametrize("changes, message", [
    # unknown key, with a suggestion
    ({"sampling__stpes": 5}, "[sampling] unknown key 'stpes' (did you mean 'steps'?)"),
    # unknown section, with a suggestion, and without one (the sections the builder reads are listed)
    ({"smapling": {"n": 3}}, "unknown section [smapling] (did you mean [sampling]?)"),
    ({"queries": {"n_per_component": 3}}, "unknown section [queries] (builder 'synthetic' reads [data], [model], "
                                          "[sampling], [labels], [balance], [placement], [instances])"),
    ({"sampling__foo": 1, "sampling__stpes": 5},
     "[sampling] unknown key 'stpes' (did you mean 'steps'?); also unknown: 'foo'"),
    # unknown top-level key
    ({"seeed": 4}, "unknown top-level key 'seeed' (did you mean 'seed'?)"),
    # wrong types: TOML strings, booleans and floats are not integers
    ({"sampling__steps": "5"}, "[sampling] steps must be an integer, got '5'"),
    ({"sampling__steps": True}, "[sampling] steps must be an integer, got true"),
    ({"model__hidden": 32.0}, "[model] hidden must be an integer, got 32.0"),
    ({"sampling": 5}, "[sampling] must be a table, got 5"),
    ({"version": 1.5}, "version must be a string or an integer, got 1.5"),
    # out of range
    ({"sampling__steps": 0}, "[sampling] steps must be greater than or equal to 2, got 0"),
    ({"labels__ratio": 1.5}, "[labels] ratio must be less than or equal to 1, got 1.5"),
    ({"labels__abs_tol": 0.0}, "[labels] abs_tol must be greater than 0, got 0.0"),
    ({"labels__null_draws": 10}, "[labels] null_draws must be greater than or equal to 100, got 10"),
    ({"labels__chance_alpha": 1.0}, "[labels] chance_alpha must be less than 1, got 1.0"),
    ({"balance__max_memorized": -0.1}, "[balance] max_memorized must be greater than or equal to 0, got -0.1"),
    ({"balance__require_subtypes": ["DD", "VM"]}, "[balance] require_subtypes[1] must be 'DD' or 'OD', got 'VM'"),
    ({"placement": {"scale": [0.8, "x"]}}, "[placement] scale[1] must be a number, got 'x'"),
    ({"placement": {"scale": [1.2, 0.8]}}, "[placement] scale must be [lo, hi] with 0 < lo <= hi, got [1.2, 0.8]"),
    ({"instances": {"dev_seeds": [1, -2]}}, "[instances] dev_seeds[1] must be greater than or equal to 0, got -2"),
    # components: unknown kind, missing kind, a key of another kind, a key the latent does not read
    ({"data__components__0__kind": "blob"},
     "[[data.components]] #1 (blob) unknown component kind 'blob'; "
     "known: circle, plane, point, sphere, squiggly, torus"),
    ({"data__components__0__kind": None}, "[[data.components]] #1 missing required key 'kind'"),
    ({"data__components__0__kind": None, "data__components__0__kindx": "circle"},
     "[[data.components]] #1 missing required key 'kind'; unknown key 'kindx' (did you mean 'kind'?)"),
    ({"data__components__0__at": [1.0, 0.0]}, "[[data.components]] #1 (circle) unknown key 'at'"),
    ({"data__components__1__d": 2}, "[[data.components]] #2 (point) unknown key 'd'"),
    ({"data__components__0__kappa": 2.0},
     "[[data.components]] #1 (circle) kappa is only read when latent = 'vonmises' (latent is 'uniform')"),
    ({"data__components__0__radius": -1.0}, "[[data.components]] #1 (circle) radius must be greater than 0, got -1.0"),
    ({"data__components__1__offset": [1.0], "data__components__1__offset_norm": 2.0},
     "[[data.components]] #2 (point) offset_norm cannot be given with offset (give one of them)"),
    # missing keys and sections; rules across keys and sections
    ({"labels__abs_tol": None, "labels__ratio": 0.3}, "[labels] missing required key 'abs_tol'"),
    ({"labels": None}, "missing required section [labels]"),
    ({"name": None}, "missing required key 'name'"),
    ({"sampling__guidance": 2.0}, "[sampling] guidance is only read when [model] conditional = true"),
    ({"balance__min_memorized": 0.8, "balance__max_memorized": 0.2},
     "[balance] max_memorized must be >= min_memorized (0.8), got 0.2"),
    ({"family": "lid"}, "family must be 'synthetic', the family of builder 'synthetic', got 'lid'"),
    ({"builder": "synthtic"}, "builder must be one of 'synthetic', 'lid', 'image', 'text-to-image', "
                              "'stable-diffusion', got 'synthtic' (did you mean 'synthetic'?)"),
    ({"model__t_power": 2.0}, "[model] unknown key 't_power'"),  # read by image builders only
])
def test_each_mistake_is_named(changes, message):
    assert _problem(_tiny(**changes)) == f"tasks/x.toml: {message}"


def _spec(name: str) -> dict:
    return _raw(next(p for p in SHIPPED if p.stem == name))


@pytest.mark.parametrize("name, edit, message", [
    ("sd-v1-4", lambda r: r["data"].update(positives="webster50"),
     "[data] positives names no registered prompt set: 'webster50' (did you mean 'webster500'?)"),
    ("sd-v1-4", lambda r: r["data"].update(positives={"file": "p.csv", "sha256": "a" * 64, "format": "csv", "sha": 1}),
     "[data.positives] unknown key 'sha' (did you mean 'sha256'?)"),
    ("sd-v1-4", lambda r: r["data"].update(positives=3), "[data] positives must be a string or a table, got 3"),
    ("sd-v1-4", lambda r: r.update(labels={"abs_tol": 1.0}), "unknown section [labels]"),
    ("sd-v1-4", lambda r: r["balance"].update(require_subtypes=["DD"]),
     "[balance] require_subtypes[0] must be 'VM' or 'TM'"),
    ("sd-v1-4", lambda r: r["sampling"].update(height=500), "[sampling] height must be a multiple of 8, got 500"),
    ("sd-v1-4", lambda r: r["model"].pop("conditional"), "[model] missing required key 'conditional'"),
    ("tiny_lid", lambda r: r["data"].update(source="skdm"), "[data] source must be 'mixture', 'skdim' or 'dgm', got 'skdm'"),
    ("tiny_lid", lambda r: r.pop("track"), "missing required key 'track'"),
    ("tiny_lid", lambda r: r["model"].pop("steps"),
     "[model] hidden is only read when a model is trained (give steps, or train = true)"),
    ("tiny_lid", lambda r: r.update(labels={"abs_tol": 1.0}), "unknown section [labels]"),
    ("tiny_skdim", lambda r: r.update(model={"steps": 10}), "unknown section [model]"),
    ("tiny_skdim", lambda r: r["data"]["manifolds"][2].update(nn=3),
     "[[data.manifolds]] #3 (M1_Sphere) unknown key 'nn' (did you mean 'n'?)"),
    ("tiny_image", lambda r: r["data"].update(source="mnist"), "[data] source must be 'digits', 'fashion', 'lfw' or"),
    ("tiny_image", lambda r: r["data"].update(rare_class=7),
     "[data] rare_class must be one of classes [0, 1, 2], got 7"),
    ("tiny_t2i", lambda r: r["model"].update(conditional=False), "[model] conditional must be True, got false"),
    ("tiny_t2i", lambda r: r["sampling"].update(n=10), "[sampling] unknown key 'n'"),
    ("lid-mix100", lambda r: r["data"]["components"][1].update(d=2),
     "[[data.components]] #2 (torus) d is only read when embedding = 'flat' (embedding is 'ring')"),
    ("lid-mix100", lambda r: r["data"]["components"][1].update(r=3.0),
     "[[data.components]] #2 (torus) r must be below R (2.0), got 3.0"),
])
def test_each_builder_refuses_its_own_mistakes(name, edit, message):
    raw = _spec(name)
    edit(raw)
    assert _problem(raw).startswith(f"tasks/x.toml: {message}")


def _tables(raw: dict):
    """Paths of every table of a spec: the top level, sections, inline tables, array entries."""
    yield ()
    for k, v in raw.items():
        if isinstance(v, dict):
            yield (k,)
            for k2, v2 in v.items():
                if isinstance(v2, dict):
                    yield (k, k2)
                elif isinstance(v2, list):
                    yield from ((k, k2, i) for i, t in enumerate(v2) if isinstance(t, dict))


def _at(node, path: tuple):
    for part in path:
        node = node[part]
    return node


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_typo_in_any_key_of_any_shipped_spec_is_refused(path):
    """Every key of every table (components, manifolds and prompt files included), misspelt, is named."""
    raw = _raw(path)
    for where in _tables(raw):
        for key in [k for k in _at(raw, where) if (where, k) != ((), "builder")]:
            typo = copy.deepcopy(raw)
            table = _at(typo, where)
            table[key + "x"] = table.pop(key)
            message = _problem(typo)
            assert (f"unknown key '{key}x'" if where else f"{key}x") in message


def test_validation_leaves_the_raw_spec_and_its_hash_alone():
    raw = _raw(TINY)
    before = copy.deepcopy(raw)
    spec = parse_spec(raw, str(TINY))
    assert spec.raw == before and "chance_alpha" not in spec.raw["labels"]  # no defaults written in
    assert spec.hash == parse_spec(before).hash


def test_load_spec_names_the_file(tmp_path):
    bad = tmp_path / "tiny.toml"
    bad.write_text(TINY.read_text().replace("steps = 60\n", "stpes = 60\n"))
    with pytest.raises(SpecError, match=r"tiny\.toml: \[sampling\] unknown key 'stpes' \(did you mean 'steps'\?\)"):
        load_spec(bad)


def test_cli_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "tiny.toml").write_text(TINY.read_text().replace("[balance]", "[balanse]"))
    monkeypatch.setenv("MMH_BENCH_TASKS_PATH", str(folder))
    assert main(["tasks"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mmh-bench: error: {folder / 'tiny.toml'}: unknown section [balanse] (did you mean [balance]?)"]


def test_sd_generations_match_the_model_module():
    from mmh_bench.task.models.stable_diffusion import GENERATIONS
    assert set(SDModel.model_fields["generation"].annotation.__args__[0].__args__) == set(GENERATIONS)


def test_subtype_names_match_the_labels():
    named = {a for m in (Balance, PromptBalance)
             for a in m.model_fields["require_subtypes"].annotation.__args__[0].__args__}
    assert named == set(SUBTYPE_CODE) - {"none"}


def test_reference_doc_is_in_sync():
    doc = ROOT / "docs" / "TASK_SPEC.md"
    assert doc.read_text() == reference(), "regenerate: python -m mmh_bench.task.spec_reference > docs/TASK_SPEC.md"
    for key in ("stpes", "`chance_alpha`", "`point_jitter`", "`dev_seeds`", "kind = 'squiggly'", "`guidance_scale`"):
        assert (key in doc.read_text()) == (key != "stpes")
