"""Every command's --json output against its JSON Schema in docs/json/ (issue 19, one vocabulary).

Each command runs once on real small inputs (a synthetic checkpoint, a sharded one, a CSV table,
an N x D array with ids, identities, certificates, a signed statement, attribution data); its
output is validated with jsonschema (draft 2020-12, $ref resolved in a local registry, no
network), and every canonical name must carry the same value as its old alias."""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

SOURCE = pathlib.Path(os.environ.get("DIDMARK_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
SCHEMAS = SOURCE / "docs" / "json"
BASE = "https://didmark.invalid/schema/"

# (command output, canonical name, alias): the alias must equal the canonical value wherever both
# appear. Dotted names reach into objects; "*" walks a list.
ALIASES = [
    ("embed_checkpoint", "path", "input"), ("embed_checkpoint", "max_relative_change", "max_tensor_change"),
    ("embed_sharded", "path", "input"), ("embed_sharded", "max_relative_change", "max_tensor_change"),
    ("embed_table", "path", "input"), ("embed_table", "rows_marked", "rows_selected"),
    ("embed_table", "columns_marked", "tensors_marked"), ("embed_table", "mark_columns", "columns"),
    ("embed_array", "path", "input"), ("embed_array", "max_relative_change", "max_row_change"),
    ("embed_certified", "certificate.output", "certificate.file"),
    ("embed_certified", "certificate.marked_at", "certificate.valid_from"),
    ("verify_table", "verdicts.*.rows_marked", "verdicts.*.marked_rows"),
    ("verify_table", "verdicts.*.columns_marked", "verdicts.*.tensors"),
    ("attack_checkpoint", "path", "input"), ("attack_array", "path", "input"),
    ("subset", "path", "input"),
    ("robustness", "path", "input"), ("robustness", "did", "owner"),
    ("certificate_make", "path", "model"), ("certificate_make", "output", "certificate"),
    ("certificate_make", "marked_at", "valid_from"),
    ("certificate_refused", "path", "model"), ("certificate_refused", "output", "certificate"),
    ("certificate_countersign", "output", "certificate"), ("certificate_countersign", "did", "owner"),
    ("certificate_verify", "path", "file"), ("certificate_verify", "did", "owner"),
    ("statement_verify", "path", "file"),
    ("id_new", "output", "file"), ("id_show", "path", "file"), ("id_check_registry", "path", "file"),
    ("synth_checkpoint", "outputs", "files"),
    ("knn_shapley", "output", "values"), ("trak", "output", "values"), ("project", "dim", "features"),
    ("demo", "params", "parameters"), ("demo", "embed.max_relative_change", "embed.max_tensor_change"),
]

# (command output, schema reference): which schema each output follows.
SCHEMA_OF = {
    "formats": "formats.schema.json",
    "id_new": "id.schema.json#/$defs/new", "id_show": "id.schema.json#/$defs/show",
    "id_export_key": "id.schema.json#/$defs/export_key",
    "id_check_registry": "id.schema.json#/$defs/check_registry",
    "did_inspect": "id.schema.json#/$defs/did_inspect",
    "synth_checkpoint": "synth.schema.json#/$defs/checkpoint", "synth_sharded": "synth.schema.json#/$defs/checkpoint",
    "synth_table": "synth.schema.json#/$defs/table", "synth_array": "synth.schema.json#/$defs/array",
    "subset": "synth.schema.json#/$defs/subset", "synth_knn": "synth.schema.json#/$defs/knn_dataset",
    "embed_checkpoint": "embed.schema.json", "embed_sharded": "embed.schema.json", "embed_table": "embed.schema.json",
    "embed_array": "embed.schema.json", "embed_npy_tensor": "embed.schema.json", "embed_certified": "embed.schema.json",
    "verify_checkpoint": "verify.schema.json", "verify_sketch": "verify.schema.json",
    "verify_sharded": "verify.schema.json", "verify_table": "verify.schema.json", "verify_array": "verify.schema.json",
    "verify_npy_tensor": "verify.schema.json", "verify_certified": "verify.schema.json",
    "sketch": "sketch.schema.json",
    "attack_checkpoint": "attack.schema.json", "attack_array": "attack.schema.json",
    "robustness": "robustness.schema.json",
    "certificate_make": "certificate.schema.json#/$defs/make",
    "certificate_refused": "certificate.schema.json#/$defs/make",
    "certificate_countersign": "certificate.schema.json#/$defs/countersign",
    "certificate_verify": "certificate.schema.json#/$defs/verify",
    "split": "royalty.schema.json#/$defs/split", "statement_verify": "royalty.schema.json#/$defs/statement_verify",
    "knn_shapley": "attribute.schema.json#/$defs/knn_shapley", "project": "attribute.schema.json#/$defs/project",
    "trak": "attribute.schema.json#/$defs/trak", "lineage": "attribute.schema.json#/$defs/lineage",
    "lineage_certified": "attribute.schema.json#/$defs/lineage",
    "demo": "demo.schema.json",
    "embed_images": "embed.schema.json", "embed_image": "embed.schema.json",
    "verify_images": "verify.schema.json", "verify_images_registry": "verify.schema.json",
    "verify_image": "verify.schema.json",
}


@pytest.fixture(scope="module")
def registry():
    resources = []
    for f in sorted(SCHEMAS.glob("*.schema.json")):
        doc = json.loads(f.read_text())
        jsonschema.Draft202012Validator.check_schema(doc)
        assert doc["$id"] == BASE + f.name, f"{f.name}: $id must be {BASE + f.name}"
        resources.append((doc["$id"], referencing.Resource.from_contents(doc)))
    return referencing.Registry().with_resources(resources)


def validator(registry, ref):
    return jsonschema.Draft202012Validator({"$ref": BASE + ref}, registry=registry)


@pytest.fixture(scope="module")
def out(tmp_path_factory, cli):
    """Runs every command with --json once; {name: parsed output} (scan: a list of lines)."""
    d = tmp_path_factory.mktemp("json")
    res = {}

    def run(name, *args, rc=0, lines=False):
        p = subprocess.run([cli, "--json", *map(str, args)], capture_output=True, text=True, cwd=d)
        assert p.returncode == rc, f"{name}: didmark {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}"
        res[name] = [json.loads(x) for x in p.stdout.splitlines() if x.strip()] if lines else json.loads(p.stdout)
        return res[name]

    run("formats", "formats")
    run("id_new", "id", "new", "-o", "alice.id.json")
    run("id_show", "id", "show", "alice.id.json")
    run("id_export_key", "id", "export-key", "alice.id.json")
    subprocess.run([cli, "-q", "id", "new", "-o", d / "bob.id.json"], check=True, capture_output=True)
    subprocess.run([cli, "-q", "id", "new", "-o", d / "op.id.json"], check=True, capture_output=True)
    bob = json.loads(subprocess.run([cli, "id", "export-key", d / "bob.id.json"], check=True, capture_output=True,
                                    text=True).stdout)
    (d / "reg.jsonl").write_text(json.dumps(res["id_export_key"]) + "\n" + json.dumps(bob) + "\n")
    run("id_check_registry", "id", "check-registry", "reg.jsonl")
    run("did_inspect", "did", "inspect", res["id_new"]["did"])

    run("synth_checkpoint", "synth", "checkpoint", "-o", "m.safetensors", "--params", 300000, "--hidden", 128)
    run("synth_sharded", "synth", "checkpoint", "-o", "msh", "--params", 300000, "--hidden", 128, "--shards", 2)
    run("synth_table", "synth", "table", "-o", "t.csv", "--rows", 3000)
    run("synth_array", "synth", "array", "-o", "a.npy", "--rows", 3000, "--dim", 64, "--ids-out", "a.ids.npy")
    np.save(d / "w.npy", np.random.default_rng(1).standard_normal((512, 512)).astype(np.float32))

    mark = ("--id", "alice.id.json")
    run("embed_checkpoint", "embed", "m.safetensors", "-o", "mm.safetensors", *mark, "--strength", 0.02,
        "--sketch", "mm.sketch")
    run("embed_sharded", "embed", "msh", "-o", "mmsh", *mark, "--strength", 0.02)
    run("embed_table", "embed", "t.csv", "-o", "tm.csv", *mark)
    run("embed_array", "embed", "a.npy", "-o", "am.npy", *mark, "--ids", "a.ids.npy")
    (d / "am.ids.npy").write_bytes((d / "a.ids.npy").read_bytes())
    run("embed_npy_tensor", "embed", "w.npy", "--format", "npy-tensor", "-o", "wm.npy", *mark, "--strength", 0.03)
    run("embed_certified", "embed", "m.safetensors", "-o", "mc.safetensors", *mark, "--strength", 0.02,
        "--certificate", "mc.cert.json")

    run("verify_checkpoint", "verify", "mm.safetensors", "--registry", "reg.jsonl")
    run("verify_sketch", "verify", "mm.safetensors", *mark, "--sketch", "mm.sketch")
    run("verify_sharded", "verify", "mmsh", *mark)
    run("verify_table", "verify", "tm.csv", *mark)
    run("verify_array", "verify", "am.npy", *mark)
    run("verify_npy_tensor", "verify", "wm.npy", "--format", "npy-tensor", *mark)
    (d / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    run("scan", "scan", "mm.safetensors", "tm.csv", "am.npy", "broken.safetensors", "--registry", "reg.jsonl",
        rc=2, lines=True)
    run("sketch", "sketch", "mm.safetensors", "-o", "s2.sketch", "--did", res["id_new"]["did"], "--strength", 0.02)
    run("subset", "synth", "subset", "-i", "tm.csv", "-o", "ts.csv", "--fraction", 0.5)
    run("attack_checkpoint", "attack", "mm.safetensors", "-o", "ma.safetensors", "--attack", "noise:0.1")
    run("attack_array", "attack", "am.npy", "-o", "aa.npy", "--ids", "am.ids.npy", "--attack", "subset:0.5")
    (d / "grid.json").write_text(json.dumps({"cells": [{"family": "none"}, {"family": "noise", "attacks": ["noise:0.1"]}]}))
    run("robustness", "robustness", "mm.safetensors", *mark, "--attacks", "grid.json", "--null-keys", 50)

    run("certificate_make", "certificate", "make", "mm.safetensors", *mark, "--strength", 0.02, "-o", "c.json")
    run("certificate_refused", "certificate", "make", "m.safetensors", *mark, "--strength", 0.02, "-o", "c0.json",
        rc=1)
    run("certificate_countersign", "certificate", "countersign", "c.json", "--authority", "op.id.json", "-o", "cs.json")
    run("certificate_verify", "certificate", "verify", "cs.json", "--model", "mm.safetensors")
    run("verify_certified", "verify", "mm.safetensors", *mark, "--certificate", "cs.json")

    (d / "w.json").write_text(json.dumps({"did:web:a.example": 2, "did:web:b.example": 1}))
    run("split", "split", "--revenue", 1000, "--weights", "w.json", "--sign", "op.id.json", "-o", "st.json")
    run("statement_verify", "statement", "verify", "st.json")

    run("synth_knn", "synth", "knn-dataset", "-o", "ds", "--registry", "reg.jsonl")
    knn = ("--train", "ds/train.npy", "--test", "ds/test.npy")
    run("knn_shapley", "attribute", "knn-shapley", *knn, "--train-labels", "ds/train_labels.npy", "--test-labels",
        "ds/test_labels.npy", "--contributors", "ds/contributors.npy", "-o", "kv.npy")
    run("project", "attribute", "project", "--grads", "ds/train.npy", "-k", 16, "-o", "pj.npy")
    run("trak", "attribute", "trak", *knn, "-k", 16, "--contributors", "ds/contributors.npy", "-o", "tv.npy")
    run("lineage", "attribute", "lineage", "mm.safetensors", "--registry", "reg.jsonl")
    run("lineage_certified", "attribute", "lineage", "mm.safetensors", "--registry", "reg.jsonl", "--certificate",
        "cs.json")
    run("demo", "demo")
    try:
        from PIL import Image
    except ImportError:  # the image outputs are checked where Pillow can write the inputs
        return res
    (d / "imgs").mkdir()
    rng = np.random.default_rng(5)
    for i, mode in enumerate(("RGB", "L", "RGBA")):
        shape = (256, 256) + ((len(mode),) if len(mode) > 1 else ())
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(d / "imgs" / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(d / "imgs" / "3.jpg", quality=90)
    run("embed_images", "embed", "imgs", "-o", "imgs_m", *mark)
    run("verify_images", "verify", "imgs_m", *mark)
    run("verify_images_registry", "verify", "imgs_m", "--registry", "reg.jsonl")
    run("embed_image", "embed", "imgs/0.png", "-o", "one.png", *mark)
    run("verify_image", "verify", "one.png", *mark)
    return res


def get(doc, dotted):
    """The values at a dotted name ("*" walks a list); [] where absent."""
    vals = [doc]
    for part in dotted.split("."):
        nxt = []
        for v in vals:
            if part == "*" and isinstance(v, list):
                nxt.extend(v)
            elif isinstance(v, dict) and part in v:
                nxt.append(v[part])
        vals = nxt
    return vals


@pytest.mark.parametrize("name", sorted(SCHEMA_OF))
def test_output_follows_its_schema(out, registry, name):
    if name not in out:
        pytest.skip(f"{name}: Pillow is needed to write the images")
    v = validator(registry, SCHEMA_OF[name])
    for doc in out[name] if name == "scan" else [out[name]]:
        errors = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def test_scan_lines_follow_their_schema(out, registry):
    v = validator(registry, "scan.schema.json")
    lines = out["scan"]
    assert [l["path"] for l in lines] == ["mm.safetensors", "tm.csv", "am.npy", "broken.safetensors"]
    for line in lines:
        errors = list(v.iter_errors(line))
        assert not errors, f"{line['path']}: {errors[0].message}"
    assert "error" in lines[3] and lines[3]["error"]["code"]
    assert [l["kind"] for l in lines[:3]] == ["checkpoint", "table", "array"]


@pytest.mark.parametrize("name,canonical,alias", ALIASES)
def test_canonical_name_equals_its_alias(out, name, canonical, alias):
    c, a = get(out[name], canonical), get(out[name], alias)
    assert c, f"{name}: no {canonical}"
    assert c == a, f"{name}: {canonical} = {c!r} but its alias {alias} = {a!r}"


def test_formats_are_named_as_didmark_formats_names_them(out):
    names = {f["name"] for f in out["formats"]}
    kinds = {f["name"]: f["kind"] for f in out["formats"]}
    # Verdicts use the canonical names; a sharded checkpoint is format safetensors with sharded: true.
    for name in ("verify_checkpoint", "verify_sharded", "verify_table", "verify_array", "verify_npy_tensor"):
        assert out[name]["format"] in names and out[name]["kind"] == kinds[out[name]["format"]]
    assert out["verify_sharded"]["format"] == "safetensors" and out["verify_sharded"]["sharded"] is True
    assert out["verify_checkpoint"]["sharded"] is False
    assert out["verify_npy_tensor"]["format"] == "npy-tensor" and out["verify_npy_tensor"]["kind"] == "checkpoint"
    # Embed reports keep the reader's old names this release (aliases); kind and sharded say the rest.
    assert out["embed_sharded"]["format"] == "safetensors-sharded" and out["embed_sharded"]["sharded"] is True
    assert out["embed_checkpoint"]["format"] == "safetensors" and out["embed_checkpoint"]["sharded"] is False
    assert out["embed_npy_tensor"]["format"] == "npy" and out["embed_npy_tensor"]["kind"] == "checkpoint"
    assert [out[n]["kind"] for n in ("embed_table", "embed_array")] == ["table", "array"]
    assert out["attack_checkpoint"]["sharded"] is False and out["robustness"]["sharded"] is False


def test_table_counts_name_columns(out):
    e, v = out["embed_table"], out["verify_table"]["verdicts"][0]
    assert e["columns_marked"] == len(e["mark_columns"]) > 0
    assert v["columns_marked"] == len(v["mark_columns"]) == e["columns_marked"]
    assert v["mark_columns"] == e["mark_columns"] and v["rows_marked"] == e["rows_marked"]


def test_outputs_name_files_that_exist(out, tmp_path_factory):
    sc = out["synth_sharded"]
    assert sc["output"].endswith(".safetensors.index.json") and sc["output"] in sc["outputs"]
    assert out["synth_checkpoint"]["outputs"] == [out["synth_checkpoint"]["output"]]
    assert out["certificate_refused"]["output"] is None and out["certificate_refused"]["detected"] is False


def test_schemas_catch_a_missing_or_mistyped_field(out, registry):
    v = validator(registry, "verify.schema.json")
    bad = json.loads(json.dumps(out["verify_table"]))
    del bad["path"]
    assert not v.is_valid(bad)
    bad = json.loads(json.dumps(out["verify_table"]))
    bad["verdicts"][0]["status"] = "maybe"
    assert not v.is_valid(bad)
    bad = json.loads(json.dumps(out["embed_table"]))
    del bad["rows_marked"]
    assert not validator(registry, "embed.schema.json").is_valid(bad)


def test_every_schema_is_exercised_and_documented(out):
    used = {ref.split("#")[0] for ref in SCHEMA_OF.values()} | {"scan.schema.json", "defs.schema.json"}
    files = {f.name for f in SCHEMAS.glob("*.schema.json")}
    assert files == used, f"schemas without a test: {files - used}; tests without a schema: {used - files}"
    readme = (SCHEMAS / "README.md").read_text()
    for f in files:
        assert f in readme, f"docs/json/README.md does not list {f}"
    for _, canonical, alias in ALIASES:
        for n in (canonical.split(".")[-1], alias.split(".")[-1]):
            assert f"`{n}`" in readme, f"docs/json/README.md: the vocabulary table lacks `{n}`"
