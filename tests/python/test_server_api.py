"""didmarkd as a marketplace backend sees it: a grpcio client generated from proto/didmark.proto
inside the test (grpcio-tools), talking to the real `didmarkd` binary over loopback, plaintext
and TLS. End to end (upload, embed, verify, register, scan, split), authentication and
scopes, paths confined to the roots, size limits, reflection, health, the config file,
SIGHUP and SIGTERM."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

grpc = pytest.importorskip("grpc", reason="grpcio is not installed (scripts/setup.sh installs it)")
pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed (scripts/setup.sh installs it)")

SOURCE = Path(os.environ.get("DIDMARK_SOURCE_DIR", Path(__file__).resolve().parents[2]))
CI_TOKEN = "ci-token-0123456789abcdef"
REG_TOKEN = "registrar-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
PAY_TOKEN = "payments-0123456789abcdef"


def bearer(token):
    return (("authorization", "Bearer " + token),)


# ---- fixtures: generated stubs, the server binary, a running server -------------------------


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """didmark_pb2 and didmark_pb2_grpc, generated now from the repository's proto."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("didmark_pb")
    proto = SOURCE / "proto"
    rc = protoc.main(["protoc", f"-I{proto}", f"--python_out={out}", f"--grpc_python_out={out}",
                      str(proto / "didmark.proto")])
    assert rc == 0, "grpc_tools.protoc failed on proto/didmark.proto"
    sys.path.insert(0, str(out))
    import didmark_pb2
    import didmark_pb2_grpc

    return didmark_pb2, didmark_pb2_grpc


@pytest.fixture(scope="session")
def didmarkd(cli):
    exe = os.environ.get("DIDMARKD") or str(Path(cli).parent / "didmarkd")
    if not Path(exe).exists():
        pytest.skip("didmarkd is not built (configure with -DDIDMARK_SERVER=ON)")
    return exe


class Server:
    """A didmarkd process; its stderr (JSON lines) goes to a file."""

    def __init__(self, exe, args, log_path):
        self.log_path = log_path
        self.log_file = open(log_path, "wb")
        self.proc = subprocess.Popen([exe, *map(str, args)], stdout=subprocess.DEVNULL, stderr=self.log_file)
        self.port = None
        deadline = time.time() + 60
        while time.time() < deadline and self.port is None:
            for e in self.events():
                if e.get("event") == "listening":
                    self.port = e["port"]
            if self.proc.poll() is not None:
                raise AssertionError(f"didmarkd exited {self.proc.returncode}:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        assert self.port, "didmarkd did not start listening"

    def events(self):
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def calls(self):
        return [e for e in self.events() if "method" in e]

    def channel(self, credentials=None, host="127.0.0.1", options=()):
        target = f"{host}:{self.port}"
        if credentials is None:
            return grpc.insecure_channel(target, options=list(options))
        return grpc.secure_channel(target, credentials, options=list(options))

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        self.log_file.close()
        return self.proc.returncode


@pytest.fixture
def start(didmarkd, tmp_path):
    servers = []

    def _start(*args):
        listen = [] if "--listen" in args else ["--listen", "127.0.0.1:0"]
        s = Server(didmarkd, [*listen, *args], tmp_path / f"didmarkd-{len(servers)}.log")
        servers.append(s)
        return s

    yield _start
    for s in servers:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        s.log_file.close()


def write_tokens(path, clients, mode=0o600):
    path.write_text("".join(json.dumps(c) + "\n" for c in clients))
    os.chmod(path, mode)
    return path


def standard_tokens(path):
    return write_tokens(path, [
        {"name": "ci", "token": CI_TOKEN, "scopes": ["verify", "embed"]},
        {"name": "registrar", "token": REG_TOKEN, "scopes": ["register"]},
        {"name": "payments", "token": PAY_TOKEN, "scopes": ["split"]},
        {"name": "ops", "token": ADMIN_TOKEN, "scopes": ["admin"]},
    ])


def upload(stub, pb2, path, token, name=None, chunk=256 * 1024, sha=True):
    data = Path(path).read_bytes()

    def chunks():
        first = pb2.UploadChunk(name=name or Path(path).name, size=len(data),
                                sha256=hashlib.sha256(data).hexdigest() if sha else "")
        for i in range(0, max(len(data), 1), chunk):
            c = first if i == 0 else pb2.UploadChunk()
            c.data = data[i:i + chunk]
            yield c

    return stub.Upload(chunks(), metadata=bearer(token), timeout=60)


# ---- end to end ---------------------------------------------------------------------------------


def test_marketplace_end_to_end(tmp_path, run, start, pb):
    """Upload a checkpoint, embed an owner's mark into it, verify it, register the owner's
    certificate, scan the folder against the registry, split the revenue: all through gRPC."""
    pb2, pb2_grpc = pb
    root = tmp_path / "root"
    (root / "spool").mkdir(parents=True)
    (root / "models").mkdir()
    (tmp_path / "certs").mkdir()
    run("synth", "checkpoint", "-o", tmp_path / "plain.safetensors", "--params", "400000", "--hidden", "128")
    run("id", "new", "-o", tmp_path / "alice.id.json")
    run("id", "new", "-o", tmp_path / "operator.id.json")
    alice = json.loads(run("id", "export-key", tmp_path / "alice.id.json").stdout)
    tokens = standard_tokens(tmp_path / "tokens.jsonl")
    srv = start("--root", root, "--spool", root / "spool", "--registry", tmp_path / "registry.jsonl",
                "--operator", tmp_path / "operator.id.json", "--certificate-dir", tmp_path / "certs",
                "--token-file", tokens, "--jobs", "2")
    stub = pb2_grpc.DidmarkStub(srv.channel())

    # Upload (streamed in chunks) into the spool.
    up = upload(stub, pb2, tmp_path / "plain.safetensors", CI_TOKEN)
    assert Path(up.path).parent == (root / "spool").resolve()
    assert Path(up.path).read_bytes() == (tmp_path / "plain.safetensors").read_bytes()
    assert up.sha256 == hashlib.sha256((tmp_path / "plain.safetensors").read_bytes()).hexdigest()

    # Embed alice's mark into a copy under the root.
    owner = pb2.Owner(did=alice["did"], key_hex=alice["key"])
    emb = stub.Embed(pb2.EmbedRequest(input=up.path, output="models/alice.safetensors", owner=owner,
                                      options=pb2.MarkOptions(strength=0.02, max_change=0.05)),
                     metadata=bearer(CI_TOKEN), timeout=120)
    marked = root / "models" / "alice.safetensors"
    assert marked.is_file() and list(emb.outputs) == [str(marked.resolve())]
    report = json.loads(emb.report_json)
    assert report["output"] == str(marked.resolve())
    # The CLI agrees the mark is there (a file the peer reads).
    assert run("verify", marked, "--id", tmp_path / "alice.id.json", check=False).returncode == 0

    # Verify through the server: detected for alice.
    v = stub.Verify(pb2.VerifyRequest(path="models/alice.safetensors", owner=owner),
                    metadata=bearer(CI_TOKEN), timeout=60)
    assert list(v.detected) == [alice["did"]]
    assert v.verdicts[0].status == "detected" and v.verdicts[0].z > 8
    # One owner in the call: the family-wise p is the owner's own, and the full pass decided.
    assert v.verdicts[0].log10_p_family == pytest.approx(v.verdicts[0].log10_p)
    assert not v.verdicts[0].screened

    # Register: the owner's certificate, countersigned by the operator, alice in the registry.
    run("certificate", "make", marked, "--id", tmp_path / "alice.id.json", "-o", tmp_path / "alice.cert.json")
    reg = stub.Register(pb2.RegisterRequest(certificate_json=(tmp_path / "alice.cert.json").read_text(),
                                            key_hex=alice["key"], model_path="models/alice.safetensors"),
                        metadata=bearer(REG_TOKEN), timeout=120)
    assert reg.did == alice["did"] and not reg.already_registered and reg.registry_owners == 1
    assert reg.model_verdict.detected
    (tmp_path / "countersigned.json").write_text(reg.certificate_json)
    check = run("--json", "certificate", "verify", tmp_path / "countersigned.json")
    cert = json.loads(check.stdout)
    assert cert["valid"] and cert["countersigned"], cert
    registry = [json.loads(l) for l in (tmp_path / "registry.jsonl").read_text().splitlines() if l.strip()]
    assert registry == [alice]
    assert len(list((tmp_path / "certs").glob("*.json"))) == 1

    # Scan the models folder and the spool against the registry (now alice).
    results = list(stub.Scan(pb2.ScanRequest(paths=["models", "spool"]), metadata=bearer(CI_TOKEN), timeout=120))
    by_name = {Path(r.path).name: r for r in results}
    assert by_name["alice.safetensors"].detected == [alice["did"]]
    assert by_name[Path(up.path).name].detected == []
    assert sorted(r.index for r in results) == list(range(len(results)))

    # Split the revenue; the payments token may, the CI token may not.
    sp = stub.Split(pb2.SplitRequest(revenue="1000", weights={alice["did"]: 3, "did:web:b.example": 1}),
                    metadata=bearer(PAY_TOKEN), timeout=30)
    assert sp.payouts[alice["did"]] == "750" and sp.issuer
    with pytest.raises(grpc.RpcError) as e:
        stub.Split(pb2.SplitRequest(revenue="1000", weights={alice["did"]: 1}), metadata=bearer(CI_TOKEN))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # One JSON line per call, with peer, token name, method, status, ms, request id; no secret.
    assert srv.stop() == 0
    calls = srv.calls()
    methods = [c["method"] for c in calls]
    for m in ("Upload", "Embed", "Verify", "Register", "Scan", "Split"):
        assert m in methods
    for c in calls:
        assert {"peer", "token", "method", "status", "ms", "request_id", "time"} <= c.keys()
    text = srv.log_path.read_text()
    for secret in (CI_TOKEN, REG_TOKEN, PAY_TOKEN, ADMIN_TOKEN, alice["key"]):
        assert secret not in text
    assert any(c["token"] == "registrar" and c["method"] == "Register" for c in calls)
    # Nothing half-written anywhere under the root.
    assert not [p for p in root.rglob("*") if p.name.startswith(".didmarkd-")]


def test_every_call_needs_a_token_and_its_scope(tmp_path, start, pb):
    pb2, pb2_grpc = pb
    (tmp_path / "root").mkdir()
    srv = start("--root", tmp_path / "root", "--token-file", standard_tokens(tmp_path / "tokens.jsonl"))
    stub = pb2_grpc.DidmarkStub(srv.channel())
    calls = [
        lambda md: stub.Verify(pb2.VerifyRequest(path="x.safetensors",
                                                 owner=pb2.Owner(did="did:web:a.example", key_hex="0" * 64)),
                               metadata=md, timeout=10),
        lambda md: list(stub.Scan(pb2.ScanRequest(paths=["."]), metadata=md, timeout=10)),
        lambda md: stub.Split(pb2.SplitRequest(revenue="1", weights={"did:web:a.example": 1}), metadata=md, timeout=10),
        lambda md: stub.Health(pb2.HealthRequest(), metadata=md, timeout=10),
        lambda md: stub.Info(pb2.InfoRequest(), metadata=md, timeout=10),
        lambda md: stub.Register(pb2.RegisterRequest(), metadata=md, timeout=10),
        lambda md: stub.Embed(pb2.EmbedRequest(), metadata=md, timeout=10),
        lambda md: stub.AttributeKnnShapley(pb2.KnnShapleyRequest(), metadata=md, timeout=10),
        lambda md: stub.Upload(iter([pb2.UploadChunk(name="x", data=b"x")]), metadata=md, timeout=10),
    ]
    for md in ((), bearer("wrong-token-0123456789abcdef"), (("authorization", CI_TOKEN),),
               (("authorization", "Basic " + CI_TOKEN),)):
        for call in calls:
            with pytest.raises(grpc.RpcError) as e:
                call(md)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, e.value.details()
            assert CI_TOKEN not in e.value.details()
    # Out of scope: PERMISSION_DENIED, naming the scope.
    for token, call in ((CI_TOKEN, calls[2]), (CI_TOKEN, calls[5]), (CI_TOKEN, calls[7]), (PAY_TOKEN, calls[0]),
                        (REG_TOKEN, calls[6]), (REG_TOKEN, calls[8])):
        with pytest.raises(grpc.RpcError) as e:
            call(bearer(token))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value.details()
    # In scope: the call itself runs (here: a missing file under the root).
    with pytest.raises(grpc.RpcError) as e:
        calls[0](bearer(CI_TOKEN))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    info = calls[4](bearer(REG_TOKEN))
    assert info.token_name == "registrar" and list(info.scopes) == ["register"] and not info.roots
    assert srv.stop() == 0
    assert CI_TOKEN not in srv.log_path.read_text()
    statuses = {c["status"] for c in srv.calls()}
    assert {"UNAUTHENTICATED", "PERMISSION_DENIED"} <= statuses


def test_paths_outside_the_roots_are_refused_without_leaking(tmp_path, start, pb):
    pb2, pb2_grpc = pb
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}              ")
    (root / "leak.safetensors").symlink_to(outside / "secret.safetensors")
    (root / "out").symlink_to(outside, target_is_directory=True)
    # /etc/passwd-like content under the root: read as safetensors, its first 8 bytes ("root:x:0")
    # are a header length of 3475222254926655346; no message may carry that number or the bytes.
    (root / "passwd").write_bytes(b"root:x:0:0:root:/root:/bin/bash\nbin:x:1:1::/bin:/usr/sbin/nologin\n")
    srv = start("--root", root)
    stub = pb2_grpc.DidmarkStub(srv.channel())
    owner = pb2.Owner(did="did:web:a.example", key_hex="11" * 32)

    def verify(path, fmt=""):
        try:
            stub.Verify(pb2.VerifyRequest(path=str(path), owner=owner, options=pb2.MarkOptions(format=fmt)),
                        timeout=30)
        except grpc.RpcError as e:
            return e.code(), e.details()
        return grpc.StatusCode.OK, ""

    answers = set()
    for p in ("/etc/passwd", "/etc/shadow", "/nonexistent/file", outside / "secret.safetensors",
              outside / "missing", "../elsewhere/secret.safetensors", "sub/../../elsewhere/secret.safetensors",
              root / "leak.safetensors", "out/secret.safetensors", "out/missing", root / ".." / "elsewhere"):
        code, msg = verify(p)
        assert code == grpc.StatusCode.PERMISSION_DENIED, (p, code, msg)
        for word in ("secret", "passwd", "shadow", "elsewhere", "exist", "bytes", "missing"):
            assert word not in msg, (p, msg)
        answers.add(msg)
    assert len(answers) == 1, answers

    code, msg = verify(root / "missing.safetensors")
    assert code == grpc.StatusCode.NOT_FOUND and "missing.safetensors" in msg

    code, msg = verify("passwd", "safetensors")
    assert code == grpc.StatusCode.DATA_LOSS, msg
    assert "3475222254926655346" not in msg, f"the file's bytes leak through the error: {msg}"
    assert "root:x" not in msg and "/bin/bash" not in msg, msg
    srv.stop()


def test_oversized_messages_and_uploads_are_refused(tmp_path, start, pb):
    pb2, pb2_grpc = pb
    root = tmp_path / "root"
    (root / "spool").mkdir(parents=True)
    srv = start("--root", root, "--spool", root / "spool", "--max-message-bytes", "1048576",
                "--max-upload-bytes", "2000000")
    stub = pb2_grpc.DidmarkStub(srv.channel(options=[("grpc.max_send_message_length", 64 << 20)]))
    owner = pb2.Owner(did="did:web:a.example", key_hex="11" * 32)
    with pytest.raises(grpc.RpcError) as e:
        stub.Verify(pb2.VerifyRequest(safetensors=b"\0" * (2 << 20), owner=owner), timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3_000_000))
    with pytest.raises(grpc.RpcError) as e:
        upload(stub, pb2, big, "")
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as e:  # the declared size alone is enough to refuse
        stub.Upload(iter([pb2.UploadChunk(name="x.bin", size=5_000_000, data=b"x")]), timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert list((root / "spool").iterdir()) == []
    srv.stop()


# ---- transport ------------------------------------------------------------------------------------


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path):
    """A self-signed server certificate (localhost, 127.0.0.1), and a CA with one client certificate."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is needed to make test certificates")
    d = tmp_path / "pki"
    d.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "server.key", "-out", "server.pem", "-days", "1", "-subj",
            "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", cwd=d)
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=didmark test CA",
            cwd=d)
    openssl("req", *ec, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=marketplace", cwd=d)
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "client.pem", "-days", "1", cwd=d)
    for k in ("server.key", "client.key", "ca.key"):
        os.chmod(d / k, 0o600)
    return d


def test_tls_with_a_self_signed_certificate(tmp_path, start, pb, pki):
    pb2, pb2_grpc = pb
    (tmp_path / "root").mkdir()
    tokens = standard_tokens(tmp_path / "tokens.jsonl")
    # Every interface, as a real deployment: needs the token file and TLS.
    srv = start("--listen", "0.0.0.0:0", "--root", tmp_path / "root", "--token-file", tokens,
                "--tls-cert", pki / "server.pem", "--tls-key", pki / "server.key")
    creds = grpc.ssl_channel_credentials(root_certificates=(pki / "server.pem").read_bytes())
    info = pb2_grpc.DidmarkStub(srv.channel(creds)).Info(pb2.InfoRequest(), metadata=bearer(CI_TOKEN), timeout=30)
    assert info.tls and not info.client_certificates and info.token_name == "ci"
    info = pb2_grpc.DidmarkStub(srv.channel(creds, host="localhost")).Info(
        pb2.InfoRequest(), metadata=bearer(CI_TOKEN), timeout=30)
    assert info.tls
    # Plaintext against the TLS port fails; a client that does not trust the certificate fails.
    with pytest.raises(grpc.RpcError) as e:
        pb2_grpc.DidmarkStub(srv.channel()).Info(pb2.InfoRequest(), metadata=bearer(CI_TOKEN), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    other = grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
    with pytest.raises(grpc.RpcError) as e:
        pb2_grpc.DidmarkStub(srv.channel(other)).Info(pb2.InfoRequest(), metadata=bearer(CI_TOKEN), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert srv.stop() == 0

    # Mutual TLS: a client certificate signed by --tls-client-ca is required.
    srv = start("--root", tmp_path / "root", "--token-file", tokens, "--tls-cert", pki / "server.pem",
                "--tls-key", pki / "server.key", "--tls-client-ca", pki / "ca.pem")
    with_cert = grpc.ssl_channel_credentials(root_certificates=(pki / "server.pem").read_bytes(),
                                             private_key=(pki / "client.key").read_bytes(),
                                             certificate_chain=(pki / "client.pem").read_bytes())
    info = pb2_grpc.DidmarkStub(srv.channel(with_cert)).Info(pb2.InfoRequest(), metadata=bearer(CI_TOKEN), timeout=30)
    assert info.client_certificates
    with pytest.raises(grpc.RpcError) as e:
        pb2_grpc.DidmarkStub(srv.channel(creds)).Info(pb2.InfoRequest(), metadata=bearer(CI_TOKEN), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert srv.stop() == 0
    # The log names the client certificate's subject next to the token's name.
    assert any(c.get("client_cert") == "marketplace" and c["token"] == "ci" for c in srv.calls()), srv.calls()


def test_exposure_rules_and_listen_addresses(didmarkd, tmp_path, pki):
    tokens = standard_tokens(tmp_path / "tokens.jsonl")

    def refused(*args):
        p = subprocess.run([didmarkd, *map(str, args)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        return p.stderr

    assert "HOST:PORT" in refused("--listen", "127.0.0.1:99999")
    assert "HOST:PORT" in refused("--listen", "0.0.0.0")
    assert "HOST:PORT" in refused("--listen", ":50551")
    assert "--token-file" in refused("--listen", "0.0.0.0:0")
    assert "TLS" in refused("--listen", "0.0.0.0:0", "--token-file", tokens)
    assert "--tls-key" in refused("--tls-cert", pki / "server.pem")
    os.chmod(tokens, 0o644)
    assert "chmod 600" in refused("--token-file", tokens)
    os.chmod(pki / "server.key", 0o644)
    os.chmod(tokens, 0o600)
    assert "chmod 600" in refused("--token-file", tokens, "--tls-cert", pki / "server.pem", "--tls-key",
                                  pki / "server.key")


# ---- reflection, health, configuration, signals ---------------------------------------------


def test_reflection_lists_the_service_and_health_answers(tmp_path, start, pb):
    pb2, pb2_grpc = pb
    refl = pytest.importorskip("grpc_reflection.v1alpha.reflection_pb2",
                               reason="grpcio-reflection is not installed (scripts/setup.sh installs it)")
    refl_grpc = pytest.importorskip("grpc_reflection.v1alpha.reflection_pb2_grpc")
    health = pytest.importorskip("grpc_health.v1.health_pb2", reason="grpcio-health-checking is not installed")
    health_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
    (tmp_path / "root").mkdir()
    srv = start("--root", tmp_path / "root", "--token-file", standard_tokens(tmp_path / "tokens.jsonl"))
    ch = srv.channel()
    stub = refl_grpc.ServerReflectionStub(ch)
    answers = list(stub.ServerReflectionInfo(iter([refl.ServerReflectionRequest(list_services="")]), timeout=30))
    names = {s.name for s in answers[0].list_services_response.service}
    assert "didmark.v1.Didmark" in names and "grpc.health.v1.Health" in names, names
    # The file descriptor of the service: every RPC of the proto is there.
    answers = list(stub.ServerReflectionInfo(
        iter([refl.ServerReflectionRequest(file_containing_symbol="didmark.v1.Didmark")]), timeout=30))
    from google.protobuf import descriptor_pb2

    fd = descriptor_pb2.FileDescriptorProto.FromString(answers[0].file_descriptor_response.file_descriptor_proto[0])
    rpcs = {m.name for s in fd.service for m in s.method}
    assert {"Verify", "Scan", "Split", "Health", "Embed", "Register", "AttributeKnnShapley", "Upload", "Info"} <= rpcs
    # The standard health service (for load balancers) answers without a token.
    h = health_grpc.HealthStub(ch).Check(health.HealthCheckRequest(service=""), timeout=30)
    assert h.status == health.HealthCheckResponse.SERVING
    srv.stop()


def test_every_option_comes_from_the_config_file(didmarkd, tmp_path, start, pb):
    pb2, pb2_grpc = pb
    root = tmp_path / "root"
    (root / "spool").mkdir(parents=True)
    tokens = standard_tokens(tmp_path / "tokens.jsonl")
    conf = tmp_path / "didmarkd.toml"
    conf.write_text(f'''# didmarkd configuration
listen = "127.0.0.1:0"
token-file = "{tokens}"
root = ["{root}", "{tmp_path}"]
spool = "{root / 'spool'}"
jobs = 3
max-queue = 17
max-call-seconds = 60
max-message-bytes = 2097152
max-upload-bytes = 12345678
drain-seconds = 5
''')
    srv = Server(didmarkd, ["--config", conf], tmp_path / "conf.log")
    try:
        info = pb2_grpc.DidmarkStub(srv.channel()).Info(pb2.InfoRequest(), metadata=bearer(ADMIN_TOKEN), timeout=30)
        assert info.limits.jobs == 3 and info.limits.max_queue == 17 and info.limits.max_call_seconds == 60
        assert info.limits.max_message_bytes == 2097152 and info.limits.max_upload_bytes == 12345678
        assert info.uploads and len(info.roots) == 2
    finally:
        assert srv.stop() == 0
    # A misspelt key is an error, not silently ignored.
    conf.write_text(conf.read_text() + "max_queu = 3\n")
    p = subprocess.run([didmarkd, "--config", str(conf)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "max_queu" in p.stderr, p.stderr


def test_sighup_reloads_tokens(tmp_path, start, pb):
    pb2, pb2_grpc = pb
    (tmp_path / "root").mkdir()
    tokens = standard_tokens(tmp_path / "tokens.jsonl")
    srv = start("--root", tmp_path / "root", "--token-file", tokens)
    stub = pb2_grpc.DidmarkStub(srv.channel())
    assert stub.Info(pb2.InfoRequest(), metadata=bearer(CI_TOKEN), timeout=30).token_name == "ci"
    new = "rotated-0123456789abcdef"
    write_tokens(tokens, [{"name": "ci2", "token": new, "scopes": ["verify"]}])
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 30
    while time.time() < deadline and not any(e.get("event") == "reload" for e in srv.events()):
        time.sleep(0.05)
    with pytest.raises(grpc.RpcError) as e:
        stub.Info(pb2.InfoRequest(), metadata=bearer(CI_TOKEN), timeout=30)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert stub.Info(pb2.InfoRequest(), metadata=bearer(new), timeout=30).token_name == "ci2"
    assert srv.stop() == 0


def test_sigterm_drains_calls_in_flight_and_refuses_new_ones(tmp_path, start, pb):
    pb2, pb2_grpc = pb
    root = tmp_path / "root"
    (root / "spool").mkdir(parents=True)
    srv = start("--root", root, "--spool", root / "spool", "--drain-seconds", "30")
    stub = pb2_grpc.DidmarkStub(srv.channel())
    go_on = threading.Event()

    def chunks():
        yield pb2.UploadChunk(name="inflight.bin", data=b"first ")
        go_on.wait(30)
        yield pb2.UploadChunk(data=b"second")

    fut = stub.Upload.future(chunks(), timeout=60)
    time.sleep(1.0)  # the first chunk is on the server; the call waits for the second
    deadline = time.time() + 30
    srv.proc.send_signal(signal.SIGTERM)
    while time.time() < deadline and not any(e.get("event") == "draining" for e in srv.events()):
        time.sleep(0.05)
    # New calls are refused (UNAVAILABLE) while the upload in flight goes on.
    with pytest.raises(grpc.RpcError) as e:
        pb2_grpc.DidmarkStub(srv.channel()).Info(pb2.InfoRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    go_on.set()
    resp = fut.result(timeout=60)
    assert Path(resp.path).read_bytes() == b"first second"
    assert srv.proc.wait(timeout=60) == 0
    events = [e.get("event") for e in srv.events()]
    assert "draining" in events and "stopped" in events
