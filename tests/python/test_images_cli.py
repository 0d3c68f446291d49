"""Image datasets through the CLI: embed a folder, verify it (dataset verdict + images list),
JPEG 50 / resize / crop on real photographs (scikit-image's bundled samples), malformed files,
formats and scan. Skips the photograph part when scikit-image or Pillow is missing."""
import io
import json
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture
def ids(run, tmp_path):
    out = {}
    reg = tmp_path / "registry.jsonl"
    with open(reg, "w") as f:
        for name in ("alice", "bob"):
            path = tmp_path / f"{name}.id.json"
            run("id", "new", "-q", "-o", path)
            f.write(run("id", "export-key", path).stdout.strip() + "\n")
            out[name] = path
    out["registry"] = reg
    return out


def synth(seed, w=320, h=256):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 110 + 50 * np.sin(x / (9 + seed)) * np.cos(y / 13) + rng.normal(0, 6, (h, w))
    rgb = np.stack([base - 15, base, base + 15], -1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def test_formats_lists_images(run):
    names = {f["name"]: f for f in json.loads(run("--json", "formats").stdout)}
    for n in ("png", "jpeg", "webp", "images"):
        assert names[n]["kind"] == "image"


def test_folder_embed_verify_contract(run, ids, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(synth(1)).save(src / "a.png")
    Image.fromarray(synth(2)).save(src / "sub" / "b.jpg", quality=85)
    Image.fromarray(synth(3)).save(src / "c.webp", quality=90)
    rgba = np.dstack([synth(4), np.full((256, 320), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(src / "d.png")
    out = tmp_path / "out"
    e = json.loads(run("--json", "embed", src, "-o", out, "--id", ids["alice"]).stdout)
    assert e["kind"] == "image" and e["images_written"] == 4 and e["mean_psnr"] >= 40
    assert (out / "sub" / "b.jpg").exists()
    assert np.array_equal(np.asarray(Image.open(out / "d.png"))[..., 3], rgba[..., 3])  # alpha untouched
    p = run("--json", "verify", out, "--id", ids["alice"], check=False)
    assert p.returncode == 0
    j = json.loads(p.stdout)
    assert j["kind"] == "image" and j["format"] == "images"
    v = j["verdicts"][0]
    assert v["detected"] and v["images"] == 4 and v["p_value"] <= 1e-9
    assert len(j["images"]) == 4
    for item in j["images"]:
        assert {"path", "z", "p_value", "detected"} <= set(item)
        assert item["detected"]
    # Each image has its own keyed phase (multiples of 4); the verifier finds it back.
    phases = {Path(i["output"]).name: i["phase"] for i in e["images"]}
    assert all(x % 4 == 0 and y % 4 == 0 for x, y in phases.values()) and len(set(map(tuple, phases.values()))) >= 3
    for item in j["images"]:
        ph, v0 = phases[Path(item["path"]).name], item["verdicts"][0]
        assert (v0["offset_x"], v0["offset_y"]) == ((128 - ph[0]) % 128, (128 - ph[1]) % 128)
    # A shuffled, renamed subset still verifies as a dataset.
    sub = tmp_path / "subset"
    sub.mkdir()
    (sub / "zz.png").write_bytes((out / "a.png").read_bytes())
    (sub / "00.webp").write_bytes((out / "c.webp").read_bytes())
    assert json.loads(run("--json", "verify", sub, "--id", ids["alice"]).stdout)["verdicts"][0]["detected"]
    # The wrong owner and the unmarked originals: not detected, exit 1.
    assert run("verify", out, "--id", ids["bob"], check=False).returncode == 1
    assert run("verify", src, "--id", ids["alice"], check=False).returncode == 1
    # A registry: p_family over the owners.
    r = json.loads(run("--json", "verify", out, "--registry", ids["registry"], check=False).stdout)
    assert r["family"] == 2 and len(r["detected"]) == 1
    # The inputs were not touched, the single-file path works, JPEG quality kept.
    assert run("--json", "verify", out / "sub" / "b.jpg", "--id", ids["alice"]).returncode == 0
    single = tmp_path / "one.jpg"
    e1 = json.loads(run("--json", "embed", src / "sub" / "b.jpg", "-o", single, "--id", ids["alice"]).stdout)
    assert e1["images"][0]["quality"] == 85
    # scan recognises the images of a folder.
    s = run("--json", "scan", out, "--registry", ids["registry"], check=False)
    assert s.returncode in (0, 1)
    assert "b.jpg" in s.stdout


def test_malformed_images_are_refused(run, ids, tmp_path):
    good = tmp_path / "g.jpg"
    Image.fromarray(synth(5)).save(good, quality=90)
    bad = tmp_path / "trunc.jpg"
    bad.write_bytes(good.read_bytes()[: 3000])
    p = run("verify", bad, "--id", ids["alice"], check=False)
    assert p.returncode == 2 and "trunc.jpg" in p.stderr and "malformed JPEG" in p.stderr
    png = tmp_path / "crc.png"
    Image.fromarray(synth(6)).save(png)
    b = bytearray(png.read_bytes())
    b[len(b) // 2] ^= 0x55
    png.write_bytes(bytes(b))
    p = run("embed", png, "-o", tmp_path / "x.png", "--id", ids["alice"], check=False)
    assert p.returncode == 2 and "crc.png" in p.stderr
    assert not (tmp_path / "x.png").exists()


def test_real_photographs_survive_attacks(run, ids, tmp_path):
    data = pytest.importorskip("skimage.data")
    photos = {"astronaut": data.astronaut(), "camera": data.camera(), "coffee": data.coffee()}
    src, out = tmp_path / "photos", tmp_path / "marked"
    src.mkdir()
    for n, a in photos.items():
        Image.fromarray(a).save(src / f"{n}.png")
    run("embed", src, "-o", out, "--id", ids["alice"])
    att = tmp_path / "attacked"
    att.mkdir()
    for n in photos:
        im = Image.open(out / f"{n}.png")
        w, h = im.size
        im.save(att / f"{n}_q50.jpg", quality=50)
        im.resize((w // 2, h // 2), Image.BILINEAR).resize((w, h), Image.BILINEAR).save(att / f"{n}_half.png")
        im.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(att / f"{n}_crop.jpg", quality=50)
    j = json.loads(run("--json", "verify", att, "--id", ids["alice"]).stdout)
    for item in j["images"]:
        assert item["p_value"] <= 1e-6, item["path"]
