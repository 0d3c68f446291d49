"""Mark certificates through the CLI: make / countersign / verify, tampering, wrong models,
swapped sketches, backdated times, the thief scenario end to end (verify precedence and
lineage), and an independent re-check of the signatures (JCS + SHA-256 + Ed25519 in Python)."""
import hashlib
import json
import math
import os

import pytest

STRENGTH = "0.01"  # a 2M-parameter model at 1%: z ~ 14, quick to embed


@pytest.fixture
def world(run, tmp_path):
    """alice, bob, a registration authority, a registry of both owners' keys and a base model."""
    w = {"dir": tmp_path}
    for name in ("alice", "bob", "op", "mallory"):
        w[name] = tmp_path / f"{name}.id.json"
        run("id", "new", "-o", w[name])
        w[name + "_did"] = json.loads(run("--json", "id", "show", w[name]).stdout)["did"]
    reg = tmp_path / "reg.jsonl"
    reg.write_text("".join(run("id", "export-key", w[n]).stdout for n in ("alice", "bob")))
    w["reg"] = reg
    w["base"] = tmp_path / "base.safetensors"
    run("synth", "checkpoint", "-o", w["base"], "--params", "2000000", "--seed", "3")
    return w


def embed(run, w, src, dst, who, *extra):
    return run("--json", "embed", src, "-o", dst, "--id", w[who], "--strength", STRENGTH, *extra)


def cert_verify(run, *args):
    p = run("--json", "certificate", "verify", *args, check=False)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None)


def test_make_countersign_verify(run, world):
    w = world
    a, cert = w["dir"] / "a.safetensors", w["dir"] / "a.cert.json"
    out = json.loads(embed(run, w, w["base"], a, "alice", "--certificate", cert).stdout)
    assert out["certificate"]["file"] == str(cert)
    doc = json.loads(cert.read_text())
    assert doc["type"] == ["VerifiableCredential", "DidmarkMarkCertificate"]
    assert doc["issuer"] == doc["credentialSubject"]["id"] == w["alice_did"]
    mark = doc["credentialSubject"]["mark"]
    assert mark["scheme"] == "spread-spectrum" and mark["carrier"] == "carrier-v1"
    assert mark["strength"] == float(STRENGTH) and mark["payloadBits"] == 256 and mark["tensors"] == ""
    res = doc["credentialSubject"]["model"]["resources"]
    assert res == [{"name": "a.safetensors", "algorithm": "sha256",
                    "digest": hashlib.sha256(a.read_bytes()).hexdigest()}]
    # Nothing secret in it: not the seed, not the watermark key.
    seed = json.loads(w["alice"].read_text())["ed25519_seed"]
    key = json.loads(run("id", "export-key", w["alice"]).stdout)["key"]
    assert seed not in cert.read_text() and key not in cert.read_text()

    rc, v = cert_verify(run, cert, "--model", a)
    assert rc == 0 and v["valid"] and v["model"]["match"] is True
    assert v["time_source"] == "self-asserted" and not v["countersigned"]
    assert "VALID" in run("certificate", "verify", cert).stdout

    cs = w["dir"] / "a.cs.json"
    run("certificate", "countersign", cert, "--authority", w["op"], "-o", cs)
    rc, v = cert_verify(run, cs, "--model", a)
    assert rc == 0 and v["time_source"] == "countersigned" and v["authority"] == w["op_did"]
    assert v["time"] == v["countersignatures"][0]["time"] and v["marked_at"] == doc["validFrom"]
    # Only the listed authorities set the time.
    rc, v = cert_verify(run, cs, "--trust-authority", w["mallory_did"])
    assert rc == 0 and v["time_source"] == "self-asserted" and v["countersignatures"][0]["trusted"] is False

    # The wrong model: the unmarked base, and a copy with one byte changed.
    rc, v = cert_verify(run, cs, "--model", w["base"])
    assert rc == 1 and not v["valid"] and v["model"]["match"] is False and "sha256" in v["reason"]
    bad = w["dir"] / "a2.safetensors"
    data = bytearray(a.read_bytes())
    data[-1] ^= 1
    bad.write_bytes(bytes(data))
    assert cert_verify(run, cs, "--model", bad)[0] == 1
    p = run("certificate", "verify", cs, "--model", bad, check=False)
    assert p.returncode == 1 and "INVALID" in p.stdout


def test_make_only_for_a_mark_that_is_there(run, world):
    w = world
    a = w["dir"] / "a.safetensors"
    embed(run, w, w["base"], a, "alice")
    c = w["dir"] / "c.json"
    p = run("--json", "certificate", "make", w["base"], "--id", w["alice"], "-o", c, check=False)
    assert p.returncode == 1 and json.loads(p.stdout)["detected"] is False and not c.exists()
    p = run("certificate", "make", a, "--id", w["bob"], "-o", c, check=False)  # bob's mark is not in it
    assert p.returncode == 1 and "REFUSED" in p.stdout and not c.exists()
    out = json.loads(run("--json", "certificate", "make", a, "--id", w["alice"], "-o", c, "--strength", STRENGTH,
                         "--timestamp", "2026-03-01T12:00:00Z").stdout)
    assert out["detected"] and out["valid_from"] == "2026-03-01T12:00:00Z"
    assert cert_verify(run, c, "--model", a)[0] == 0
    # Existing output, the owner countersigning their own certificate, bad files: errors (2).
    assert run("certificate", "make", a, "--id", w["alice"], "-o", c, check=False).returncode == 2
    p = run("certificate", "countersign", c, "--authority", w["alice"], "-o", w["dir"] / "x.json", check=False)
    assert p.returncode == 2 and "own certificate" in p.stderr
    assert run("certificate", "verify", w["dir"] / "missing.json", check=False).returncode == 2
    (w["dir"] / "junk.json").write_text("{not json")
    assert run("certificate", "verify", w["dir"] / "junk.json", check=False).returncode == 2


def test_sharded_model(run, world):
    w = world
    src, dst = w["dir"] / "sharded", w["dir"] / "marked"
    run("synth", "checkpoint", "-o", src, "--params", "2000000", "--shards", "3", "--hidden", "256")
    c = w["dir"] / "s.cert.json"
    embed(run, w, src, dst, "alice", "--certificate", c)
    res = json.loads(c.read_text())["credentialSubject"]["model"]["resources"]
    names = [r["name"] for r in res]
    assert names == sorted(names) and len(names) == 4 and any(n.endswith(".safetensors.index.json") for n in names)
    for r in res:
        assert r["digest"] == hashlib.sha256((dst / r["name"]).read_bytes()).hexdigest()
    assert cert_verify(run, c, "--model", dst)[0] == 0
    shard = dst / next(n for n in names if not n.endswith(".json"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x40
    shard.write_bytes(bytes(data))
    rc, v = cert_verify(run, c, "--model", dst)
    assert rc == 1 and shard.name in v["reason"]


@pytest.mark.parametrize("path,value", [
    (("issuer",), "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"),
    (("validFrom",), "2020-01-01T00:00:00Z"),
    (("credentialSubject", "mark", "strength"), 0.02),
    (("credentialSubject", "mark", "scheme"), "stdm"),
    (("credentialSubject", "mark", "tensors"), "attn"),
    (("credentialSubject", "mark", "keyDigest"), "0" * 64),
    (("credentialSubject", "model", "resources", 0, "digest"), "1" * 64),
    (("credentialSubject", "model", "resources", 0, "name"), "other.safetensors"),
    (("credentialSubject", "model", "parameters"), 1),
    (("proof", 0, "created"), "2020-01-01T00:00:00Z"),
    (("proof", 1, "created"), "2020-01-01T00:00:00Z"),
    (("proof", 1, "verificationMethod"), None),
])
def test_tampered_certificate(run, world, path, value):
    w = world
    a, c, cs = w["dir"] / "a.safetensors", w["dir"] / "a.cert.json", w["dir"] / "a.cs.json"
    embed(run, w, w["base"], a, "alice", "--certificate", c)
    run("certificate", "countersign", c, "--authority", w["op"], "-o", cs)
    doc = json.loads(cs.read_text())
    node = doc
    for k in path[:-1]:
        node = node[k]
    if value is None:  # the registrar's proof claimed for mallory
        value = node[path[-1]].replace(w["op_did"][8:], w["mallory_did"][8:])
    assert node[path[-1]] != value
    node[path[-1]] = value
    bad = w["dir"] / "bad.json"
    bad.write_text(json.dumps(doc))
    rc, v = cert_verify(run, bad)
    assert rc == 1 and not v["valid"] and v["reason"], v
    # didmark verify refuses to order owners by it (an error, exit 2).
    p = run("verify", a, "--registry", w["reg"], "--certificate", bad, check=False)
    assert p.returncode == 2 and "does not verify" in p.stderr


def test_swapped_sketch(run, world):
    w = world
    a = w["dir"] / "a.safetensors"
    embed(run, w, w["base"], a, "alice")
    sketch, other = w["dir"] / "a.sketch", w["dir"] / "other.sketch"
    # Real sketches: verify reads the certified one to realign with it.
    run("sketch", a, "-o", sketch, "--did", w["alice_did"], "--strength", STRENGTH)
    run("sketch", w["base"], "-o", other, "--did", w["alice_did"], "--strength", STRENGTH, check=False)
    if not other.exists():  # the unmarked base may not sketch (nothing marked): any other bytes do
        other.write_bytes(sketch.read_bytes()[:-1] + bytes([sketch.read_bytes()[-1] ^ 1]))
    c = w["dir"] / "a.cert.json"
    run("certificate", "make", a, "--id", w["alice"], "-o", c, "--strength", STRENGTH, "--sketch", sketch)
    sk = json.loads(c.read_text())["credentialSubject"]["sketch"]
    assert sk == {"name": "a.sketch", "algorithm": "sha256", "digest": hashlib.sha256(sketch.read_bytes()).hexdigest()}
    assert cert_verify(run, c, "--sketch", sketch)[0] == 0
    rc, v = cert_verify(run, c, "--sketch", other)
    assert rc == 1 and v["sketch"]["match"] is False
    # The sketch beside the certificate is used by verify; a swapped one is refused.
    assert run("verify", a, "--registry", w["reg"], "--certificate", c).returncode == 0
    sketch.write_bytes(other.read_bytes())
    p = run("verify", a, "--registry", w["reg"], "--certificate", c, check=False)
    assert p.returncode == 2 and "not the certified sketch" in p.stderr


def precedence_of(run, w, model, *certs, extra=()):
    args = ["--json", "verify", model, "--registry", w["reg"], *extra]
    for c in certs:
        args += ["--certificate", c]
    out = json.loads(run(*args).stdout)
    return out, out["precedence"]


def test_thief_end_to_end(run, world):
    """alice marks and registers at t1; bob marks alice's published file and registers at t2."""
    w = world
    d = w["dir"]
    a, b = d / "a.safetensors", d / "b.safetensors"
    embed(run, w, w["base"], a, "alice", "--certificate", d / "a.cert.json")
    run("certificate", "countersign", d / "a.cert.json", "--authority", w["op"], "-o", d / "a.cs.json",
        "--timestamp", "2026-01-10T09:00:00Z")
    embed(run, w, a, b, "bob", "--certificate", d / "b.cert.json")
    run("certificate", "countersign", d / "b.cert.json", "--authority", w["op"], "-o", d / "b.cs.json",
        "--timestamp", "2026-02-10T09:00:00Z")

    # The certificates in either order: alice first.
    for certs in ((d / "a.cs.json", d / "b.cs.json"), (d / "b.cs.json", d / "a.cs.json")):
        out, prec = precedence_of(run, w, b, *certs)
        assert out["detected"] == [w["alice_did"], w["bob_did"]]
        assert [p["did"] for p in prec] == [w["alice_did"], w["bob_did"]]
        assert [p["time"] for p in prec] == ["2026-01-10T09:00:00Z", "2026-02-10T09:00:00Z"]
        assert all(p["countersigned"] and p["time_source"] == "countersigned" and p["flags"] == [] for p in prec)
        assert prec[1]["this_file"] and not prec[0]["this_file"]
    text = run("verify", b, "--registry", w["reg"], "--certificate", d / "a.cs.json", "--certificate",
               d / "b.cs.json").stdout
    assert "precedence (earliest first)" in text and text.index(w["alice_did"], text.index("precedence")) < \
        text.index(w["bob_did"], text.index("precedence"))

    # Lineage: the z rule gives bob a share by z; with certificates alice gets the base share.
    plain = json.loads(run("--json", "attribute", "lineage", b, "--registry", w["reg"]).stdout)
    assert all(o["share"] > 0.3 for o in plain["owners"])
    lin = json.loads(run("--json", "attribute", "lineage", b, "--registry", w["reg"], "--certificate", d / "a.cs.json",
                         "--certificate", d / "b.cs.json", "-o", d / "weights.json").stdout)
    own = {o["did"]: o for o in lin["owners"]}
    assert own[w["alice_did"]]["role"] == "base" and own[w["alice_did"]]["share"] == pytest.approx(0.8)
    assert own[w["bob_did"]]["role"] == "derivative" and own[w["bob_did"]]["share"] == pytest.approx(0.2)
    assert own[w["alice_did"]]["base_model_relation"] == "finetune"
    assert [p["did"] for p in lin["precedence"]] == [w["alice_did"], w["bob_did"]]
    assert json.loads((d / "weights.json").read_text()) == {w["alice_did"]: pytest.approx(0.8),
                                                           w["bob_did"]: pytest.approx(0.2)}
    lin0 = json.loads(run("--json", "attribute", "lineage", b, "--registry", w["reg"], "--certificate",
                          d / "b.cs.json", "--certificate", d / "a.cs.json", "--derivative-share", "0").stdout)
    assert lin0["weights"] == {w["alice_did"]: 1.0}
    # From precomputed verdicts (no keys needed for the certificates).
    (d / "v.json").write_text(run("--json", "verify", b, "--registry", w["reg"]).stdout)
    lin_v = json.loads(run("--json", "attribute", "lineage", b, "--verdicts", d / "v.json", "--certificate",
                           d / "a.cs.json", "--certificate", d / "b.cs.json").stdout)
    assert lin_v["weights"] == lin["weights"]

    # A certificate implies its owner, but not the key: without --registry it must disclose it.
    p = run("verify", b, "--certificate", d / "a.cs.json", check=False)
    assert p.returncode == 2 and "no watermark key" in p.stderr
    # A certificate for another key than the registry's entry for its DID is refused.
    wrong = d / "wrong.jsonl"
    wrong.write_text(json.dumps({"did": w["alice_did"], "key": "ab" * 32}) + "\n")
    p = run("verify", b, "--registry", wrong, "--certificate", d / "a.cs.json", check=False)
    assert p.returncode == 2 and "key digests differ" in p.stderr


def test_certificates_alone_with_disclosed_keys(run, world):
    w = world
    d = w["dir"]
    a, b = d / "a.safetensors", d / "b.safetensors"
    embed(run, w, w["base"], a, "alice", "--certificate", d / "a.cert.json", "--disclose-key")
    embed(run, w, a, b, "bob", "--certificate", d / "b.cert.json", "--disclose-key")
    key = json.loads(run("id", "export-key", w["alice"]).stdout)["key"]
    assert json.loads((d / "a.cert.json").read_text())["credentialSubject"]["mark"]["verificationKey"] == key
    out = json.loads(run("--json", "verify", b, "--certificate", d / "a.cert.json", "--certificate",
                         d / "b.cert.json").stdout)
    assert out["detected"] == [w["alice_did"], w["bob_did"]]
    prec = out["precedence"]
    assert [p["did"] for p in prec] == [w["alice_did"], w["bob_did"]]  # self-asserted times, in order
    assert all("self-asserted" in p["flags"] for p in prec)


def test_backdated_self_asserted_time_loses_to_countersigned(run, world):
    w = world
    d = w["dir"]
    a, b = d / "a.safetensors", d / "b.safetensors"
    embed(run, w, w["base"], a, "alice", "--certificate", d / "a.cert.json")
    run("certificate", "countersign", d / "a.cert.json", "--authority", w["op"], "-o", d / "a.cs.json")
    embed(run, w, a, b, "bob")
    run("certificate", "make", b, "--id", w["bob"], "-o", d / "b.cert.json", "--strength", STRENGTH,
        "--timestamp", "2019-06-01T00:00:00Z")  # claims to predate everything
    # His own friend's "authority" with a clock set back: counts only when trusted.
    run("certificate", "countersign", d / "b.cert.json", "--authority", w["mallory"], "-o", d / "b.cs.json",
        "--timestamp", "2019-06-01T00:01:00Z")
    _, prec = precedence_of(run, w, b, d / "b.cert.json", d / "a.cs.json")
    assert [p["did"] for p in prec] == [w["alice_did"], w["bob_did"]]
    assert prec[1]["time"] == "2019-06-01T00:00:00Z" and prec[1]["time_source"] == "self-asserted"
    assert "self-asserted" in prec[1]["flags"] and prec[0]["countersigned"]
    _, prec = precedence_of(run, w, b, d / "b.cs.json", d / "a.cs.json", extra=("--trust-authority", w["op_did"]))
    assert [p["did"] for p in prec] == [w["alice_did"], w["bob_did"]]
    assert "self-asserted" in prec[1]["flags"]
    # Without a trust list, mallory's countersignature counts and is named: the reader sees who.
    _, prec = precedence_of(run, w, b, d / "b.cs.json", d / "a.cs.json")
    assert prec[0]["did"] == w["bob_did"] and prec[0]["authority"] == w["mallory_did"]


def test_inconsistent_later_owner(run, world):
    """bob certifies his own clean line; alice's mark is later added to bob's model. Time says
    alice first, but bob's certified model (beside his certificate) lacks alice's mark."""
    w = world
    d = w["dir"]
    a = d / "a.safetensors"
    embed(run, w, w["base"], a, "alice", "--certificate", d / "a.cert.json")
    run("certificate", "countersign", d / "a.cert.json", "--authority", w["op"], "-o", d / "a.cs.json",
        "--timestamp", "2026-01-01T00:00:00Z")
    other = d / "other.safetensors"
    run("synth", "checkpoint", "-o", other, "--params", "2000000", "--seed", "4")
    bdir = d / "bob"
    bdir.mkdir()
    b = bdir / "b.safetensors"
    embed(run, w, other, b, "bob", "--certificate", bdir / "b.cert.json")
    run("certificate", "countersign", bdir / "b.cert.json", "--authority", w["op"], "-o", bdir / "b.cs.json",
        "--timestamp", "2026-02-01T00:00:00Z")
    mixed = d / "mixed.safetensors"
    embed(run, w, b, mixed, "alice")
    _, prec = precedence_of(run, w, mixed, d / "a.cs.json", bdir / "b.cs.json")
    assert [p["did"] for p in prec] == [w["alice_did"], w["bob_did"]]
    assert "inconsistent" in prec[1]["flags"] and prec[1]["missing"] == [w["alice_did"]]
    lin = json.loads(run("--json", "attribute", "lineage", mixed, "--registry", w["reg"], "--certificate",
                         d / "a.cs.json", "--certificate", bdir / "b.cs.json").stdout)
    rel = {o["did"]: o["base_model_relation"] for o in lin["owners"]}
    assert rel == {w["alice_did"]: "merge", w["bob_did"]: "merge"}
    # Moved away from its certificate, bob's model cannot be checked: "unchecked", not a verdict.
    b.rename(d / "moved.safetensors")
    _, prec = precedence_of(run, w, mixed, d / "a.cs.json", bdir / "b.cs.json")
    assert prec[1]["flags"] == ["unchecked"]


# ---- An independent implementation of eddsa-jcs-2022 with proof chains ----

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58decode(s):
    n = 0
    for c in s:
        n = n * 58 + B58.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(s) - len(s.lstrip("1"))) + raw


def es_number(x):
    """ECMAScript Number::toString (RFC 8785 3.2.2.3), from Python's shortest round-trip repr."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise TypeError(x)
    if x == 0:
        return "0"
    r = repr(float(x))
    sign, r = ("-", r[1:]) if r.startswith("-") else ("", r)
    mant, e = (r.split("e")[0], int(r.split("e")[1])) if "e" in r else (r, 0)
    ip, fp = mant.split(".") if "." in mant else (mant, "")
    digits, n = ip + fp, len(ip) + e  # value = 0.digits * 10^n
    while digits.startswith("0"):
        digits, n = digits[1:], n - 1
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    return sign + digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))


def jcs(o):
    if isinstance(o, dict):
        # UTF-16 code-unit order of keys (the same as code points for these ASCII keys).
        items = sorted(o.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + jcs(v) for k, v in items) + "}"
    if isinstance(o, list):
        return "[" + ",".join(jcs(v) for v in o) + "]"
    if isinstance(o, str) or o is None or isinstance(o, bool):
        return json.dumps(o, ensure_ascii=False)
    return es_number(o)


def test_es_number():
    for x, s in ((0.01, "0.01"), (1e-7, "1e-7"), (1e21, "1e+21"), (5.0, "5"), (0.000001, "0.000001"),
                 (123456789012345680000.0, "123456789012345680000"), (-2.5e-8, "-2.5e-8"), (0.005, "0.005"),
                 (1.5, "1.5"), (2 ** 60, "1152921504606847000"), (1e-6, "0.000001"), (123e-20, "1.23e-18")):
        assert es_number(x) == s


def verify_proof(unsecured, proof):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    proof = dict(proof)
    sig = b58decode(proof.pop("proofValue")[1:])
    assert len(sig) == 64
    if "@context" not in proof:
        proof["@context"] = unsecured["@context"]
    did, frag = proof["verificationMethod"].split("#")
    assert frag == did[len("did:key:"):]
    key = b58decode(frag[1:])
    assert key[:2] == b"\xed\x01" and len(key) == 34
    data = hashlib.sha256(jcs(proof).encode()).digest() + hashlib.sha256(jcs(unsecured).encode()).digest()
    ed25519.Ed25519PublicKey.from_public_bytes(key[2:]).verify(sig, data)  # raises when wrong
    return did


def test_certificate_verifies_with_an_independent_implementation(run, world):
    from cryptography.exceptions import InvalidSignature

    w = world
    d = w["dir"]
    a = d / "a.safetensors"
    embed(run, w, w["base"], a, "alice", "--certificate", d / "a.cert.json", "--tensors", "attn|mlp")
    run("certificate", "countersign", d / "a.cert.json", "--authority", w["op"], "-o", d / "a.cs.json")
    text = (d / "a.cs.json").read_text()
    doc = json.loads(text)
    assert jcs(doc) + "\n" == text  # the file is canonical

    owner_proof, authority_proof = doc["proof"]
    base = {k: v for k, v in doc.items() if k != "proof"}
    assert verify_proof(base, owner_proof) == doc["issuer"] == w["alice_did"]
    assert owner_proof["created"] == doc["validFrom"] and "previousProof" not in owner_proof
    # The chained proof (VC Data Integrity 4.3): the document with "proof": [the previous proof].
    assert authority_proof["previousProof"] == owner_proof["id"]
    assert verify_proof(dict(base, proof=[owner_proof]), authority_proof) == w["op_did"]
    for p in (owner_proof, authority_proof):
        assert p["type"] == "DataIntegrityProof" and p["cryptosuite"] == "eddsa-jcs-2022"
        assert p["proofPurpose"] == "assertionMethod"
    # ... and a changed field fails here too.
    with pytest.raises(InvalidSignature):
        verify_proof(dict(base, validFrom="2020-01-01T00:00:00Z"), owner_proof)
    with pytest.raises(InvalidSignature):
        verify_proof(dict(base, proof=[dict(owner_proof, created="2020-01-01T00:00:00Z")]), authority_proof)

    # The bindings, recomputed: file digests, the key digest (from the exported key).
    subject = doc["credentialSubject"]
    assert subject["mark"]["tensors"] == "attn|mlp"
    for r in subject["model"]["resources"]:
        assert r["digest"] == hashlib.sha256((d / r["name"]).read_bytes()).hexdigest()
    key = bytes.fromhex(json.loads(run("id", "export-key", w["alice"]).stdout)["key"])
    assert subject["mark"]["keyDigest"] == hashlib.sha256(b"didmark/watermark-key-digest/v1\0" + key).hexdigest()


def test_help(run):
    for args in (["certificate", "--help"], ["certificate", "make", "--help"], ["certificate", "countersign", "--help"],
                 ["certificate", "verify", "--help"]):
        assert "Usage" in run(*args).stdout
    assert "--certificate" in run("embed", "--help").stdout
    assert "--certificate" in run("verify", "--help").stdout
    assert "--derivative-share" in run("attribute", "lineage", "--help").stdout


def test_scan_with_certificates(run, world):
    """`didmark scan --certificate`: every file's line carries the precedence verify would give."""
    w = world
    d = w["dir"]
    up = d / "uploads"
    up.mkdir()
    a, b = up / "a.safetensors", up / "b.safetensors"
    embed(run, w, w["base"], a, "alice", "--certificate", d / "a.cert.json")
    run("certificate", "countersign", d / "a.cert.json", "--authority", w["op"], "-o", d / "a.cs.json",
        "--timestamp", "2026-01-10T09:00:00Z")
    embed(run, w, a, b, "bob", "--certificate", d / "b.cert.json")
    run("certificate", "countersign", d / "b.cert.json", "--authority", w["op"], "-o", d / "b.cs.json",
        "--timestamp", "2026-02-10T09:00:00Z")
    p = run("--json", "scan", up, "--registry", w["reg"], "--certificate", d / "b.cs.json", "--certificate",
            d / "a.cs.json")
    lines = {json.loads(l)["path"].split("/")[-1]: json.loads(l) for l in p.stdout.splitlines() if l.strip()}
    assert set(lines) == {"a.safetensors", "b.safetensors"}
    for name in ("a.safetensors", "b.safetensors"):
        _, prec = precedence_of(run, w, up / name, d / "a.cs.json", d / "b.cs.json")
        assert lines[name]["precedence"] == prec
    assert [e["did"] for e in lines["b.safetensors"]["precedence"]] == [w["alice_did"], w["bob_did"]]
    # Without certificates the lines have no precedence (as before).
    p = run("--json", "scan", up, "--registry", w["reg"])
    assert all("precedence" not in json.loads(l) for l in p.stdout.splitlines() if l.strip())
