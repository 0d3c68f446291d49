"""CLI behaviour of `didmark id ...` and `didmark did inspect`."""
import json
import os
import stat

ZERO_SEED_DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"


def new_identity(run, path):
    p = run("id", "new", "-o", path)
    return p.stdout.strip()


def test_id_new_show_export(run, tmp_path):
    f = tmp_path / "alice.id.json"
    did = new_identity(run, f)
    assert did.startswith("did:key:z6Mk")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    secret = json.loads(f.read_text())["ed25519_seed"]

    shown = json.loads(run("--json", "id", "show", f).stdout)
    assert shown["did"] == did and shown["mode"] == "0600" and shown["method"] == "key"
    assert len(shown["public_key"]) == 64 and len(shown["codeword_fingerprint"]) == 16

    line = run("id", "export-key", f).stdout.strip()
    entry = json.loads(line)
    assert entry["did"] == did and len(entry["key"]) == 64
    assert entry["key"] != secret
    # Exporting is deterministic.
    assert run("id", "export-key", f).stdout.strip() == line

    # The secret appears in no output of any command.
    for args in (["id", "show", f], ["--json", "id", "show", f], ["id", "export-key", f],
                 ["--json", "id", "export-key", f]):
        p = run(*args)
        assert secret not in p.stdout and secret not in p.stderr


def test_id_new_refuses_to_overwrite(run, tmp_path):
    f = tmp_path / "a.json"
    first = new_identity(run, f)
    p = run("id", "new", "-o", f, check=False)
    assert p.returncode == 2 and "already exists" in p.stderr
    assert json.loads(run("--json", "id", "show", f).stdout)["did"] == first
    second = run("id", "new", "-o", f, "--force").stdout.strip()
    assert second != first


def test_readable_identity_file_is_refused(run, tmp_path):
    f = tmp_path / "a.json"
    new_identity(run, f)
    secret = json.loads(f.read_text())["ed25519_seed"]
    os.chmod(f, 0o644)
    for args in (["id", "show", f], ["id", "export-key", f]):
        p = run(*args, check=False)
        assert p.returncode == 2
        assert "mode 0644" in p.stderr and "chmod 600" in p.stderr
        assert secret not in p.stderr and secret not in p.stdout
    p = run("--json", "id", "show", f, check=False)
    assert json.loads(p.stdout)["error"]["code"] == "permission"


def test_corrupt_identity_file_does_not_leak(run, tmp_path):
    f = tmp_path / "a.json"
    new_identity(run, f)
    secret = json.loads(f.read_text())["ed25519_seed"]
    f.write_text(f.read_text().replace('"\n}', '" garbage }'))
    os.chmod(f, 0o600)
    p = run("--json", "id", "show", f, check=False)
    assert p.returncode == 2
    assert json.loads(p.stdout)["error"]["code"] == "corrupt_input"
    assert secret[:12] not in p.stdout + p.stderr


def test_did_inspect(run):
    j = json.loads(run("--json", "did", "inspect", ZERO_SEED_DID).stdout)
    assert j["method"] == "key" and j["can_sign"] is True
    assert j["public_key"] == "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
    assert j["codeword"].startswith(j["codeword_fingerprint"]) and len(j["codeword"]) == 64

    j = json.loads(run("--json", "did", "inspect", "did:pkh:eip155:1:0xb9c5714089478a327f09197987f16f9e5d936e8a").stdout)
    assert j["method"] == "pkh" and j["can_sign"] is False and "public_key" not in j

    human = run("did", "inspect", "did:web:example.com").stdout
    assert "method       web" in human and "cannot sign" in human


def test_did_inspect_malformed(run):
    for bad, why in (("did:key:xyz", "starting with 'z'"),
                     ("did:web:example.com#frag", "DID URL"),
                     ("DID:web:x", "starts with 'did:'"),
                     ("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0", "base58btc")):
        p = run("did", "inspect", bad, check=False)
        assert p.returncode == 2, bad
        assert why in p.stderr, p.stderr


def test_registry_round_trip_and_bad_lines(run, tmp_path):
    reg = tmp_path / "registry.jsonl"
    lines = []
    for name in ("alice", "bob"):
        f = tmp_path / f"{name}.id.json"
        new_identity(run, f)
        lines.append(run("id", "export-key", f).stdout.strip())
    reg.write_text("\n".join(lines) + "\n")
    j = json.loads(run("--json", "id", "check-registry", reg).stdout)
    assert j["entries"] == 2

    reg.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[0] + "\n")
    p = run("id", "check-registry", reg, check=False)
    assert p.returncode == 2 and ":3: duplicate DID" in p.stderr and "first on line 1" in p.stderr

    reg.write_text(lines[0] + "\n{not json\n")
    p = run("id", "check-registry", reg, check=False)
    assert p.returncode == 2 and ":2: not valid JSON" in p.stderr


def test_help_everywhere(run):
    for args in (["id", "--help"], ["id", "new", "--help"], ["id", "show", "--help"],
                 ["id", "export-key", "--help"], ["did", "inspect", "--help"]):
        p = run(*args)
        assert "Usage" in p.stdout
