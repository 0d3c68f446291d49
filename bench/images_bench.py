#!/usr/bin/env python3
"""Image marks, measured: quality (PSNR, SSIM) and robustness on the real photographs bundled
in scikit-image's wheel (nothing is downloaded), a dataset test over 20 images after JPEG 50,
and the speed per 1080p image side by side with invisible-watermark's dwtDct (when installed),
file decode and encode included. Prints Markdown (docs/perf/images.md).

    DIDMARK_CLI=build/bin/didmark python3 bench/images_bench.py [--skip-speed]

The peer is not part of scripts/setup.sh (it pulls opencv-python, PyWavelets and torch):
    python3 -m pip install invisible-watermark
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
from PIL import Image
import skimage.data as data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

CLI = os.environ.get("DIDMARK_CLI") or shutil.which("didmark")
# Photographs in the wheel (skimage/data/*.png|jpg); drawings, text and masks are left out.
PHOTOS = ["astronaut", "camera", "coffee", "chelsea", "brick", "grass", "gravel", "moon", "coins",
          "rocket", "retina", "hubble_deep_field", "immunohistochemistry", "motorcycle_left", "clock"]


def load(name):
    if name == "motorcycle_left":
        return data.stereo_motorcycle()[0]
    if name == "clock":
        return data.clock()
    return getattr(data, name)()


def cli(*args, check=True):
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True)
    if check and p.returncode not in (0, 1):
        sys.exit(f"didmark {' '.join(map(str, args))}: {p.stderr}")
    return p


def attacks(im):
    w, h = im.size
    def jpeg(x, q=50):
        b = io_bytes(x, "JPEG", quality=q); return Image.open(b).convert(x.mode)
    def half(x):
        return x.resize((w // 2, h // 2), Image.BILINEAR).resize((w, h), Image.BILINEAR)
    def crop(x):
        return x.crop((w // 20, h // 20, w - w // 20, h - h // 20))
    def bc(x, b, c):
        a = np.asarray(x).astype(np.float32)
        return Image.fromarray(np.clip((a - 128) * c + 128 + b * 255, 0, 255).round().astype(np.uint8))
    return {
        "jpeg50": jpeg(im), "resize0.5": half(im), "crop10": crop(im),
        "bright+10": bc(im, 0.1, 1), "bright-10": bc(im, -0.1, 1), "contrast+10": bc(im, 0, 1.1), "contrast-10": bc(im, 0, 0.9),
        "resize+jpeg50": jpeg(half(im)), "crop+jpeg50": jpeg(crop(im)), "bright+10+jpeg50": jpeg(bc(im, 0.1, 1.1)),
    }


def io_bytes(im, fmt, **kw):
    import io
    b = io.BytesIO(); im.save(b, fmt, **kw); b.seek(0); return b


def verify(path, idf):
    return json.loads(cli("--json", "verify", path, "--id", idf).stdout)


def estimation_attack(src, out, tmp, idf):
    """The tile-averaging attack of docs/dataset.md, as a thief holding the owner's marked photos
    would run it without the key: the pattern is the same in every 128 x 128 tile of every image
    and starts at the top-left pixel, so the average of all tiles' high-pass residuals estimates
    it; that estimate, scaled to `level` 8-bit levels RMS, is subtracted from every photo."""
    from scipy.ndimage import uniform_filter
    print("## Estimation attack: the owner's photos averaged tile by tile, the estimate subtracted\n")
    def luma(a):
        return a.astype(np.float64) if a.ndim == 2 else a[..., :3].astype(np.float64) @ [0.299, 0.587, 0.114]
    acc, cnt, imgs = np.zeros((128, 128)), np.zeros((128, 128)), {}
    for n in PHOTOS:
        a = np.asarray(Image.open(out / f"{n}.png")); imgs[n] = a
        y = luma(a); r = y - uniform_filter(y, 9, mode="nearest")
        for y0 in range(0, r.shape[0], 128):
            for x0 in range(0, r.shape[1], 128):
                t = r[y0:y0 + 128, x0:x0 + 128]
                acc[:t.shape[0], :t.shape[1]] += t; cnt[:t.shape[0], :t.shape[1]] += 1
    est = acc / cnt
    est /= est.std()
    print(f"{len(PHOTOS)} marked photos, one 128 x 128 estimate.\n")
    print("| subtracted (levels RMS) | dataset z | images detected | per-image z median / min | PSNR to the original, mean |")
    print("|---:|---:|---:|---:|---:|")
    for level in (1.0, 2.0, 3.0):
        att = tmp / f"estimated{level}"; att.mkdir()
        psnr = []
        for n, a in imgs.items():
            h, w = a.shape[:2]
            t = level * np.tile(est, (h // 128 + 1, w // 128 + 1))[:h, :w]
            b = np.clip(np.round(a - (t[..., None] if a.ndim == 3 else t)), 0, 255).astype(np.uint8)
            Image.fromarray(b).save(att / f"{n}.png")
            psnr.append(peak_signal_noise_ratio(np.asarray(Image.open(src / f"{n}.png")), b, data_range=255))
        j = verify(att, idf)
        zs = [im["verdicts"][0]["z"] for im in j["images"]]
        v = j["verdicts"][0]
        print(f"| {level:.0f} | {v['z']:.1f} | {v['images_detected']} of {len(zs)} | {np.median(zs):.1f} / {min(zs):.1f} | "
              f"{np.mean(psnr):.1f} |")
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--null-keys", type=int, default=350, help="wrong keys x photos x 2 null trials")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    idf, other = tmp / "alice.id.json", tmp / "bob.id.json"
    cli("id", "new", "-q", "-o", idf); cli("id", "new", "-q", "-o", other)
    src, out = tmp / "photos", tmp / "marked"
    src.mkdir()
    for n in PHOTOS:
        Image.fromarray(load(n)).save(src / f"{n}.png")
    cli("embed", src, "-o", out, "--id", idf)
    print("## Quality at the default strength (3)\n")
    print("| photo | size | PSNR dB | SSIM |\n|---|---|---:|---:|")
    ps, ss = [], []
    for n in PHOTOS:
        x, y = np.asarray(Image.open(src / f"{n}.png")), np.asarray(Image.open(out / f"{n}.png"))
        p = peak_signal_noise_ratio(x, y, data_range=255)
        s = structural_similarity(x, y, channel_axis=2 if x.ndim == 3 else None, data_range=255)
        ps.append(p); ss.append(s)
        print(f"| {n} | {x.shape[1]}x{x.shape[0]} | {p:.1f} | {s:.4f} |")
    print(f"| **mean** | | **{np.mean(ps):.1f}** | **{np.mean(ss):.4f}** |\n")

    print("## Robustness per image (z; p = exp(-z^2/2); p <= 1e-6 needs z >= 5.26)\n")
    att = tmp / "attacked"; att.mkdir()
    names = None
    for n in PHOTOS:
        im = Image.open(out / f"{n}.png")
        A = attacks(im); names = list(A)
        for k, v in A.items():
            v.save(att / f"{n}__{k}.png")
        im.save(att / f"{n}__intact.png")
    j = verify(att, idf)
    z = {Path(i["path"]).stem: i["z"] for i in j["images"]}
    cols = ["intact"] + names
    print("| photo | " + " | ".join(cols) + " |\n|---|" + "---:|" * len(cols))
    worst = {c: 1e9 for c in cols}
    for n in PHOTOS:
        row = []
        for c in cols:
            v = z[f"{n}__{c}"]; worst[c] = min(worst[c], v); row.append(f"{v:.1f}")
        print(f"| {n} | " + " | ".join(row) + " |")
    print("| **min** | " + " | ".join(f"**{worst[c]:.1f}**" for c in cols) + " |\n")
    big = [n for n in PHOTOS if min(load(n).shape[:2]) >= 512]
    fails = [(n, c, z[f"{n}__{c}"]) for n in big for c in cols if z[f"{n}__{c}"] < 5.257]
    print(f"Photos at >= 512x512: {', '.join(big)}; cases under p <= 1e-6: {fails if fails else 'none'}\n")

    # Unmarked originals and a wrong key.
    zs_clean = [i["z"] for i in verify(src, idf)["images"]]
    zs_wrong = [i["z"] for i in verify(att, other)["images"]]
    print(f"Unmarked photos, right key: max z {max(zs_clean):.2f}; marked and attacked photos, wrong key "
          f"({len(zs_wrong)} images): max z {max(zs_wrong):.2f}\n")

    print("## Dataset test: 20 images after JPEG 50\n")
    ds = tmp / "dataset"; ds.mkdir()
    k = 0
    for n in PHOTOS:
        im = Image.open(out / f"{n}.png")
        im.save(ds / f"{k:02d}.jpg", quality=50); k += 1
        if k < 20 and min(im.size) >= 400:  # a second view: the left half, cropped
            w, h = im.size
            im.crop((0, 0, w // 2 + 37, h)).save(ds / f"{k:02d}.jpg", quality=50); k += 1
        if k >= 20:
            break
    d = verify(ds, idf)
    v = d["verdicts"][0]
    dw = verify(ds, other)["verdicts"][0]
    print(f"{len(d['images'])} images: dataset z {v['z']:.1f}, p {v['p_value']:.3g} (log10 {v['log10_p']:.1f}); "
          f"{v['images_detected']} detected on their own; wrong key z {dw['z']:.2f}\n")

    estimation_attack(src, out, tmp, idf)

    # The null over >= 10^4 trials on real photographs: a registry of wrong keys against the
    # unmarked originals and against the marked photos (every key but the owner's is wrong).
    print("## Null: wrong keys on the real photographs\n")
    reg = tmp / "null.jsonl"
    try:  # fresh identities in-process when the module is importable (a CLI call each otherwise)
        import didmark
        lines = [didmark.Identity.new().registry_line() for _ in range(a.null_keys)]
    except ImportError:
        lines = []
        for i in range(a.null_keys):
            kf = tmp / f"null{i}.id.json"
            cli("id", "new", "-q", "-o", kf)
            lines.append(cli("id", "export-key", kf).stdout.strip())
    reg.write_text("\n".join(l.strip() for l in lines) + "\n")
    zs, who = [], []
    for folder in (src, out):
        j = json.loads(cli("--json", "verify", folder, "--registry", reg, "--fwer", "off").stdout)
        for im in j["images"]:
            for k, v in enumerate(im["verdicts"]):
                zs.append(v["z"]); who.append((Path(im["path"]).name, folder.name, k))
    zs = np.array(zs)
    top = np.argsort(zs)[::-1][:5]
    print("largest: " + "; ".join(f"{zs[i]:.2f} ({who[i][1]}/{who[i][0]}, key {who[i][2]})" for i in top) + "\n")
    print(f"{len(zs)} trials ({a.null_keys} keys x {len(PHOTOS)} photos, unmarked and marked): mean z {zs.mean():.3f}, "
          f"sd {zs.std():.3f}, max {zs.max():.2f}; at or over z 3 / 4 / 5.26 (p = 1e-6): "
          f"{(zs >= 3).sum()} / {(zs >= 4).sum()} / {(zs >= 5.257).sum()} "
          f"(the bound exp(-z^2/2) allows {len(zs) * np.exp(-4.5):.0f} / {len(zs) * np.exp(-8):.1f} / "
          f"{len(zs) * 1e-6:.3f})\n")

    if a.skip_speed:
        return
    print("## Speed per 1080p JPEG (file decode + mark + file encode)\n")
    base = Image.fromarray(data.astronaut()).resize((1920, 1920), Image.BICUBIC).crop((0, 420, 1920, 1500))
    f = tmp / "hd.jpg"; base.save(f, quality=90)
    def timeit(fn, n):
        ts = []
        for _ in range(n):
            t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
        return statistics.median(ts)
    o = tmp / "hd.marked.jpg"
    t_dm_e = timeit(lambda: cli("embed", f, "-o", o, "--id", idf, "-f"), a.repeat)
    t_dm_v = timeit(lambda: cli("verify", o, "--id", idf), a.repeat)
    rows = [("didmark, one CLI process per image (start-up included)", t_dm_e, t_dm_v)]
    # Per image inside one process: a folder of N copies, one embed and one verify call.
    n = 20
    fold = tmp / "hd"; fold.mkdir()
    for i in range(n):
        shutil.copy(f, fold / f"{i:02d}.jpg")
    for threads in ("1", None):
        env = dict(os.environ, DIDMARK_DEVICE="cpu")
        if threads:
            env["DIDMARK_THROUGHPUT_THREADS"] = threads
            env["DIDMARK_THREADS"] = threads
        def run_env(*args):
            subprocess.run([CLI, *map(str, args)], env=env, check=True, capture_output=True)
        def emb():
            shutil.rmtree(tmp / "hdm", ignore_errors=True); run_env("embed", fold, "-o", tmp / "hdm", "--id", idf)
        te = timeit(emb, 3) / n
        tv = timeit(lambda: run_env("verify", tmp / "hdm", "--id", idf), 3) / n
        rows.append((f"didmark, folder of {n} in one process, {threads or os.cpu_count()} thread(s)", te, tv))
    # Per image through the Python bindings, one call per image as a Python pipeline would make
    # it (the peer's situation: no process start), on one thread; in a child process so the
    # thread count is set before the library starts its pool.
    probe = r"""
import json, statistics, sys, time, didmark
f, o, idf, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def med(fn):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
e = med(lambda: didmark.embed_file(f, o, idf, force=True, device="cpu"))
v = med(lambda: didmark.verify_file(o, idf, device="cpu"))
print(json.dumps([e, v]))
"""
    env1 = dict(os.environ, DIDMARK_THREADS="1", DIDMARK_THROUGHPUT_THREADS="1")
    p = subprocess.run([sys.executable, "-c", probe, f, tmp / "hd.py.jpg", idf, str(3 * a.repeat)], env=env1,
                       capture_output=True, text=True)
    if p.returncode == 0:
        e, v = json.loads(p.stdout)
        rows.append(("didmark, Python bindings, one call per image (embed_file / verify_file), 1 thread", e, v))
    else:
        print("(the didmark Python module is not importable here: no in-process row)\n")
    try:
        import cv2
        from imwatermark import WatermarkEncoder, WatermarkDecoder
        enc = WatermarkEncoder(); enc.set_watermark("bytes", b"didm")
        dec = WatermarkDecoder("bytes", 32)
        o2 = str(tmp / "hd.iwm.jpg")
        def iwm_e():
            bgr = cv2.imread(str(f)); cv2.imwrite(o2, enc.encode(bgr, "dwtDct"), [cv2.IMWRITE_JPEG_QUALITY, 90])
        def iwm_d():
            dec.decode(cv2.imread(o2), "dwtDct")
        rows.append(("invisible-watermark dwtDct", timeit(iwm_e, a.repeat), timeit(iwm_d, a.repeat)))
    except ImportError:
        print("(invisible-watermark not installed: no side-by-side figure)\n")
    print("| method | encode ms | decode ms |\n|---|---:|---:|")
    for n, e, dd in rows:
        print(f"| {n} | {1000*e:.0f} | {1000*dd:.0f} |")
    if rows[-1][0].startswith("invisible"):
        for r in rows[:-1]:
            print(f"\n{r[0]}: encode {rows[-1][1]/r[1]:.1f}x, decode {rows[-1][2]/r[2]:.1f}x the speed of dwtDct")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
