"""CLI behaviour of `didmark split` and `didmark statement verify`, checked against an
independent exact reference (Python's Fraction)."""
import json
import random
from fractions import Fraction

import pytest


def reference_split(revenue, weights):
    """The documented rule: floors, then the largest remainders, ties to the smaller DID
    (UTF-16 order equals code-point order for the ASCII of DIDs). Negative weights clip."""
    ws = {d: max(Fraction(w) if not isinstance(w, str) else Fraction(w), Fraction(0)) for d, w in weights.items()}
    total = sum(ws.values())
    exact = {d: Fraction(revenue) * w / total for d, w in ws.items()}
    out = {d: int(v) for d, v in exact.items()}  # floor (non-negative)
    left = revenue - sum(out.values())
    order = sorted(ws, key=lambda d: (-(exact[d] - out[d]), d))
    for d in order[:left]:
        out[d] += 1
    return out


def split_json(run, tmp_path, revenue, weights, *extra, name="w.json"):
    f = tmp_path / name
    f.write_text(json.dumps(weights))
    p = run("--json", "split", "--revenue", revenue, "--weights", f, *extra)
    return json.loads(p.stdout)


def test_seventy_thirty_either_order(run, tmp_path):
    a = split_json(run, tmp_path, 5, {"did:web:a.example": 70, "did:web:b.example": 30}, name="a.json")
    b = split_json(run, tmp_path, 5, {"did:web:b.example": 30, "did:web:a.example": 70}, name="b.json")
    assert a["payouts"] == b["payouts"] == {"did:web:a.example": "4", "did:web:b.example": "1"}
    # Payouts are decimal strings: amounts exceed 2^53.
    big = split_json(run, tmp_path, 2**128 - 1, {"did:web:a.example": 1, "did:web:b.example": 2})
    assert big["payouts"] == {"did:web:a.example": str((2**128 - 1) // 3), "did:web:b.example": str(2 * (2**128 - 1) // 3)}


@pytest.mark.parametrize("seed", range(6))
def test_matches_exact_reference(run, tmp_path, seed):
    rng = random.Random(seed)
    weights = {}
    for i in range(rng.randint(1, 40)):
        kind = rng.randrange(5)
        if kind == 0:
            w = rng.random() * 10 ** rng.randint(-30, 30)
        elif kind == 1:
            w = f"{rng.randint(0, 10**12)}.{rng.randint(0, 10**6):06d}"  # exact decimal string
        elif kind == 2:
            w = -rng.random()  # clipped to zero
        elif kind == 3:
            w = rng.randint(0, 5)
        else:
            w = rng.random()
        weights[f"did:web:p{rng.randint(0, 10**6)}-{i}.example"] = w
    weights["did:web:anchor.example"] = 1.5
    revenue = rng.choice([rng.randint(0, 1000), rng.randint(0, 2**128 - 1), 10**30])
    out = split_json(run, tmp_path, revenue, weights)
    got = {d: int(a) for d, a in out["payouts"].items()}
    assert got == reference_split(revenue, weights)
    assert sum(got.values()) == revenue


def test_sign_verify_and_tamper(run, tmp_path):
    op = tmp_path / "operator.id.json"
    run("id", "new", "-o", op)
    seed = json.loads(op.read_text())["ed25519_seed"]
    w = tmp_path / "w.json"
    w.write_text(json.dumps({"did:web:a.example": 70, "did:web:b.example": "30"}))
    st = tmp_path / "statement.json"
    out = json.loads(run("--json", "split", "--revenue", "1000", "--weights", w, "--sign", op, "-o", st,
                         "--timestamp", "2026-11-25T12:00:00Z").stdout)
    assert out["statement"]["file"] == str(st)
    assert out["statement"]["proof_value"].startswith("z")
    text = st.read_text()
    assert seed not in text
    doc = json.loads(text)
    assert doc["@context"][0] == "https://www.w3.org/ns/credentials/v2"
    assert doc["proof"]["cryptosuite"] == "eddsa-jcs-2022"
    # One level: its table lists each payee once, [weight as given, payout].
    assert doc["credentialSubject"]["levels"][0]["payees"] == {"did:web:a.example": [70, "700"],
                                                               "did:web:b.example": ["30", "300"]}
    assert "payouts" not in doc["credentialSubject"]

    v = run("statement", "verify", st)
    assert "VALID" in v.stdout
    j = json.loads(run("--json", "statement", "verify", st).stdout)
    assert j["valid"] and j["signature_ok"] and j["payouts_ok"] and j["canonical_ok"]

    # Change a payout; change a weight; add a space: each fails with exit status 1.
    for old, new in (('"700"', '"701"'), ('[70,', '[71,'), ('{"@context"', '{ "@context"')):
        assert old in text
        bad = tmp_path / "bad.json"
        bad.write_text(text.replace(old, new, 1))
        p = run("statement", "verify", bad, check=False)
        assert p.returncode == 1, (old, p.stdout, p.stderr)
        assert "INVALID" in p.stdout
    # ... unless reformatting is explicitly allowed.
    assert run("statement", "verify", "--allow-reformatted", bad).returncode == 0

    bad.write_text(text[:-20])
    assert run("statement", "verify", bad, check=False).returncode == 2  # not JSON any more
    assert run("statement", "verify", tmp_path / "missing.json", check=False).returncode == 2


def test_cascade_policy(run, tmp_path):
    (tmp_path / "lineage.json").write_text(json.dumps({"did:web:base-a.example": 3, "did:web:base-b.example": 1}))
    (tmp_path / "policy.json").write_text(json.dumps({
        "levels": [
            {"name": "platform fee", "keep_bps": 1000, "weights": {"did:web:market.example": 1}},
            {"name": "base models", "keep_bps": 3000, "weights_file": "lineage.json"},
            {"name": "data", "weights": "input"},
        ]}))
    out = split_json(run, tmp_path, 10000, {"did:web:alice.example": 2, "did:web:market.example": 1},
                     "--policy", tmp_path / "policy.json")
    assert out["payouts"] == {"did:web:market.example": str(1000 + 2100), "did:web:base-a.example": "2025",
                              "did:web:base-b.example": "675", "did:web:alice.example": "4200"}
    market = next(p for p in out["payees"] if p["did"] == "did:web:market.example")
    assert market["path"] == [{"level": "platform fee", "amount": "1000"}, {"level": "data", "amount": "2100"}]
    assert [l["kept"] for l in out["levels"]] == ["1000", "2700", "6300"]

    # The signed statement: each level lists its payees once with [weight, payout]; the
    # totals follow because there is more than one level.
    op = tmp_path / "op.id.json"
    run("id", "new", "-o", op)
    st = tmp_path / "st.json"
    run("split", "--revenue", 10000, "--weights", tmp_path / "w.json", "--policy", tmp_path / "policy.json",
        "--sign", op, "-o", st)
    subject = json.loads(st.read_text())["credentialSubject"]
    assert [l["payees"] for l in subject["levels"]] == [
        {"did:web:market.example": [1, "1000"]},
        {"did:web:base-a.example": [3, "2025"], "did:web:base-b.example": [1, "675"]},
        {"did:web:alice.example": [2, "4200"], "did:web:market.example": [1, "2100"]}]
    assert subject["payouts"] == out["payouts"]
    assert run("statement", "verify", st).returncode == 0


def test_errors(run, tmp_path):
    w = tmp_path / "w.json"
    w.write_text('{"did:web:a.example": 1, "did:web:a.example": 2}')
    p = run("split", "--revenue", "10", "--weights", w, check=False)
    assert p.returncode == 2 and "payee did:web:a.example is listed twice" in p.stderr
    w.write_text('{"did:web:a.example": 0}')
    p = run("split", "--revenue", "10", "--weights", w, check=False)
    assert p.returncode == 2 and "name a fallback payee" in p.stderr
    out = json.loads(run("--json", "split", "--revenue", "10", "--weights", w, "--fallback", "did:web:platform.example").stdout)
    assert out["payouts"] == {"did:web:a.example": "0", "did:web:platform.example": "10"}
    w.write_text('{"did:web:a.example": -1, "did:web:b.example": 1}')
    p = run("split", "--revenue", "10", "--weights", w, "--negative", "refuse", check=False)
    assert p.returncode == 2 and "negative weight" in p.stderr
    p = run("split", "--revenue", "10.5", "--weights", w, check=False)
    assert p.returncode == 2 and "whole number of minor units" in p.stderr
    p = run("split", "--revenue", "10", "--weights", w, "-o", tmp_path / "s.json", check=False)
    assert p.returncode == 2 and "--sign" in p.stderr


def test_help(run):
    for args in (["split", "--help"], ["statement", "--help"], ["statement", "verify", "--help"]):
        p = run(*args)
        assert "Usage" in p.stdout
    assert "minor units" in run("split", "--help").stdout


B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58decode(s):
    n = 0
    for c in s:
        n = n * 58 + B58.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(s) - len(s.lstrip("1"))) + raw


def test_statement_verifies_with_an_independent_implementation(run, tmp_path):
    """eddsa-jcs-2022 re-checked with Python's json (canonical for this content: ASCII keys,
    integers and strings) and the `cryptography` package's Ed25519."""
    crypto = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    import hashlib

    op = tmp_path / "op.id.json"
    run("id", "new", "-o", op)
    w = tmp_path / "w.json"
    w.write_text(json.dumps({"did:web:a.example": 7, "did:web:b.example": "3.25", "did:web:c.example": 1}))
    st = tmp_path / "st.json"
    run("split", "--revenue", "123456789012345678901234567890", "--weights", w, "--sign", op, "-o", st)
    doc = json.loads(st.read_text())

    def jcs(o):
        return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    assert jcs(doc) + b"\n" == st.read_bytes()  # the file is canonical
    proof = doc.pop("proof")
    sig = b58decode(proof.pop("proofValue")[1:])
    assert proof["@context"] == doc["@context"]
    vm = proof["verificationMethod"]
    did, frag = vm.split("#")
    assert did == doc["issuer"] and frag == did[len("did:key:"):]
    key = b58decode(frag[1:])
    assert key[:2] == b"\xed\x01" and len(key) == 34
    data = hashlib.sha256(jcs(proof)).digest() + hashlib.sha256(jcs(doc)).digest()
    crypto.Ed25519PublicKey.from_public_bytes(key[2:]).verify(sig, data)  # raises if invalid
    payouts = {d: int(row[1]) for d, row in doc["credentialSubject"]["levels"][0]["payees"].items()}
    assert payouts == reference_split(123456789012345678901234567890,
                                      {"did:web:a.example": 7, "did:web:b.example": "3.25", "did:web:c.example": 1})
