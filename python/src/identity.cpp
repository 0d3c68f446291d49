// Identities, DIDs, codewords and registries.
#include <span>

#include "bindings.hpp"
#include "common.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"

namespace didmark::python {
namespace {

py::bytes bytes_of(std::span<const uint8_t> b) {
  return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
}

std::string string_of_bytes(const py::handle& b, std::string_view what) {
  DIDMARK_EXPECTS(py::isinstance<py::bytes>(b) || py::isinstance<py::bytearray>(b), invalid_argument, what,
                  " must be bytes");
  return py::isinstance<py::bytes>(b) ? std::string(b.cast<py::bytes>()) : std::string(b.cast<py::bytearray>());
}

std::span<const uint8_t> span_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

void bind_identity(py::module_& m) {
  using namespace py::literals;
  py::class_<Identity>(m, "Identity",
                       "An owner identity: a did:key (Ed25519) and its secret. The secret never appears in "
                       "repr or str; save() writes it to a mode-0600 file.")
      .def_static("new", &Identity::generate, "new() -> Identity\n\nA fresh identity from the system's secure random source.")
      .def_static(
          "from_seed",
          [](const py::handle& seed) {
            const std::string s = string_of_bytes(seed, "seed");
            DIDMARK_EXPECTS(s.size() == 32, invalid_argument, "seed: expected 32 bytes, got ", s.size());
            return Identity::from_seed(std::span<const uint8_t, 32>(span_of(s).data(), 32));
          },
          "seed"_a, "from_seed(seed: bytes) -> Identity\n\nThe identity of a 32-byte Ed25519 seed (deterministic).")
      .def_static(
          "load", [](const py::handle& path) { return load_identity(path_of(path)); }, "path"_a,
          "load(path) -> Identity\n\nRead an identity file (refused when group or others can read it).")
      .def(
          "save", [](const Identity& id, const py::handle& path, bool overwrite) {
            save_identity(id, path_of(path), overwrite);
          },
          "path"_a, "overwrite"_a = false, "save(path, overwrite=False)\n\nWrite the identity file (mode 0600, atomically).")
      .def_property_readonly("did", &Identity::did)
      .def_property_readonly("public_key", [](const Identity& id) { return bytes_of(id.public_key()); },
                             "The 32-byte Ed25519 public key.")
      .def(
          "watermark_key", [](const Identity& id) { return bytes_of(id.watermark_key().bytes); },
          "watermark_key() -> bytes\n\nThe 32-byte watermark key (HKDF of the secret and the DID). Give it to verifiers, not the secret.")
      .def(
          "registry_line",
          [](const Identity& id) { return registry_line({id.did(), id.watermark_key()}); },
          "registry_line() -> str\n\nThis identity's registry line {\"did\": ..., \"key\": hex} (no newline).")
      .def(
          "sign",
          [](const Identity& id, const py::handle& message) {
            const std::string msg = string_of_bytes(message, "message");
            return bytes_of(id.sign(span_of(msg)));
          },
          "message"_a, "sign(message: bytes) -> bytes\n\nEd25519 signature (64 bytes) of `message`.")
      .def("__repr__", [](const Identity& id) { return "<didmark.Identity " + id.did() + ">"; });

  m.def(
      "parse_did",
      [](const std::string& did) {
        const DidInfo info = parse_did(did);
        py::dict d;
        d["did"] = info.did;
        d["method"] = info.method;
        d["public_key"] = info.ed25519_public ? py::object(bytes_of(*info.ed25519_public)) : py::object(py::none());
        d["codeword_fingerprint"] = codeword_fingerprint(info.did);
        return d;
      },
      "did"_a,
      "parse_did(did: str) -> dict\n\nValidate a DID (as `didmark did inspect`): {did, method, public_key (did:key Ed25519, else None), "
      "codeword_fingerprint}. Raises didmark.Error with the reason when malformed.");
  m.def(
      "codeword",
      [](const std::string& did, std::size_t bits) {
        const Payload p = did_codeword(did, bits);
        py::array out = new_array(DType::u8, {static_cast<int64_t>(p.size())});
        std::copy(p.bits.begin(), p.bits.end(), static_cast<uint8_t*>(out.mutable_data()));
        return out;
      },
      "did"_a, "bits"_a = kDefaultPayloadBits, "codeword(did: str, bits=256) -> numpy.ndarray\n\nThe payload codeword of a DID: a uint8 array of 0/1 bits.");
  m.def(
      "verify_signature",
      [](const std::string& did, const py::handle& message, const py::handle& signature) {
        const std::string msg = string_of_bytes(message, "message"), sig = string_of_bytes(signature, "signature");
        return verify_signature(did, span_of(msg), span_of(sig));
      },
      "did"_a, "message"_a, "signature"_a, "verify_signature(did: str, message: bytes, signature: bytes) -> bool\n\nTrue when `signature` is did's Ed25519 signature of `message`.");
  m.def(
      "load_registry",
      [](const py::handle& path) {
        py::dict out;
        for (const auto& e : load_registry(path_of(path))) out[py::str(e.did)] = bytes_of(e.key.bytes);
        return out;
      },
      "path"_a, "load_registry(path) -> dict[str, bytes]\n\nRead a JSON Lines registry: {did: 32-byte watermark key}, in file order.");
}

}  // namespace didmark::python
