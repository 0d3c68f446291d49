// `didmark id ...` (identity files, exported keys, registries) and `didmark did inspect`.
#include <sys/stat.h>

#include <cstdio>
#include <iostream>

#include "cli.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"

namespace didmark::cli {
namespace {

std::string hex_of(std::span<const uint8_t> b) {
  static constexpr char d[] = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) {
    s.push_back(d[x >> 4]);
    s.push_back(d[x & 15]);
  }
  return s;
}

std::string codeword_hex(std::string_view did) {
  const Payload p = did_codeword(did);
  std::vector<uint8_t> bytes((p.size() + 7) / 8, 0);
  for (std::size_t i = 0; i < p.size(); ++i) bytes[i / 8] |= static_cast<uint8_t>(p.bits[i] << (i % 8));
  return hex_of(bytes);
}

std::string file_mode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "?";
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return buf;
}

void register_id(CLI::App& app, Globals& g, Action& action) {
  CLI::App& id = command_group(app, "id",
                               "Owner identities: create an Ed25519 did:key identity file, show it, export its "
                               "watermark key as a registry line, check a registry");
  id.footer(
      "An identity file holds a did:key and its Ed25519 secret seed (JSON, mode 0600). didmark refuses\n"
      "identity files that group or others can read. The secret is never printed; the watermark key\n"
      "(HKDF-SHA256 of the secret and the DID) is printed only by 'id export-key'. See docs/identity.md.\n");

  {
    auto file = std::make_shared<std::string>();
    auto force = std::make_shared<bool>(false);
    CLI::App* c = id.add_subcommand("new", "Create a new identity (fresh Ed25519 key) and print its DID");
    c->add_option("-o,--output", *file, "Identity file to write (created with mode 0600)")->required();
    c->add_flag("-f,--force", *force, "Replace the file if it exists (default: refuse)");
    c->callback([&g, &action, file, force] {
      action = [&g, file, force]() -> int {
        const Identity ident = Identity::generate();
        save_identity(ident, *file, *force);
        if (g.json) {
          print_json({{"did", ident.did()},
                      {"output", *file},
                      {"file", *file},
                      {"public_key", hex_of(ident.public_key())},
                      {"codeword_fingerprint", codeword_fingerprint(ident.did())}});
        } else {
          std::cout << ident.did() << "\n";
          if (!g.quiet)
            std::cerr << "didmark: wrote identity " << *file << " (mode 0600); it holds your secret key: keep it "
                      << "private and backed up\n";
        }
        return kExitOk;
      };
    });
  }
  {
    auto file = std::make_shared<std::string>();
    CLI::App* c = id.add_subcommand("show", "Show the DID, public key and codeword fingerprint of an identity file");
    c->add_option("FILE", *file, "Identity file")->required();
    c->callback([&g, &action, file] {
      action = [&g, file]() -> int {
        const Identity ident = load_identity(*file);
        const std::string pk = hex_of(ident.public_key()), fp = codeword_fingerprint(ident.did());
        if (g.json) {
          print_json({{"did", ident.did()},
                      {"method", "key"},
                      {"key_type", "Ed25519"},
                      {"public_key", pk},
                      {"codeword_fingerprint", fp},
                      {"path", *file},
                      {"file", *file},
                      {"mode", file_mode(*file)}});
        } else {
          std::printf("did          %s\nmethod       key (Ed25519)\npublic key   %s\ncodeword     %s (first 64 of "
                      "256 bits)\nfile         %s (mode %s)\n",
                      ident.did().c_str(), pk.c_str(), fp.c_str(), file->c_str(), file_mode(*file).c_str());
        }
        return kExitOk;
      };
    });
  }
  {
    auto file = std::make_shared<std::string>();
    CLI::App* c = id.add_subcommand(
        "export-key",
        "Print the registry line {\"did\": ..., \"key\": hex} of an identity: the 256-bit watermark key that "
        "verifies (and could remove) its marks, without the signing secret");
    c->add_option("FILE", *file, "Identity file")->required();
    c->footer("Append it to a registry: didmark id export-key alice.id.json >> registry.jsonl");
    c->callback([&g, &action, file] {
      action = [&g, file]() -> int {
        const Identity ident = load_identity(*file);
        const RegistryEntry e{ident.did(), ident.watermark_key()};
        if (g.json)
          print_json({{"did", e.did}, {"key", e.key.to_hex()}});
        else
          std::cout << registry_line(e) << "\n";
        return kExitOk;
      };
    });
  }
  {
    auto file = std::make_shared<std::string>();
    CLI::App* c = id.add_subcommand("check-registry",
                                    "Check a registry (JSON Lines of {\"did\", \"key\"}) and list its DIDs");
    c->add_option("FILE", *file, "Registry file (.jsonl)")->required();
    c->callback([&g, &action, file] {
      action = [&g, file]() -> int {
        const auto entries = load_registry(*file);
        if (g.json) {
          nlohmann::json dids = nlohmann::json::array();
          for (const auto& e : entries) dids.push_back(e.did);
          print_json({{"path", *file}, {"file", *file}, {"entries", entries.size()}, {"dids", dids}});
        } else {
          std::printf("%s: %zu entries\n", file->c_str(), entries.size());
          for (const auto& e : entries) std::printf("  %s\n", e.did.c_str());
        }
        return kExitOk;
      };
    });
  }
}

void register_did(CLI::App& app, Globals& g, Action& action) {
  CLI::App& did = command_group(app, "did", "Decentralized identifiers: inspect a DID");
  auto value = std::make_shared<std::string>();
  CLI::App* c = did.add_subcommand(
      "inspect",
      "Check a DID and show its method, its Ed25519 public key (did:key) and its payload codeword");
  c->add_option("DID", *value, "A DID: did:key:z6Mk... (Ed25519, can sign) or any other method (owner name only)")
      ->required();
  c->footer("Exit status 2 with the reason when the DID is malformed.");
  c->callback([&g, &action, value] {
    action = [&g, value]() -> int {
      const DidInfo info = parse_did(*value);
      const std::string fp = codeword_fingerprint(info.did);
      const std::string pk = info.ed25519_public ? hex_of(*info.ed25519_public) : "";
      if (g.json) {
        nlohmann::json j{{"did", info.did},
                         {"method", info.method},
                         {"can_sign", info.ed25519_public.has_value()},
                         {"codeword_fingerprint", fp},
                         {"codeword", codeword_hex(info.did)}};
        if (info.ed25519_public) {
          j["key_type"] = "Ed25519";
          j["public_key"] = pk;
        }
        print_json(j);
      } else {
        std::printf("did          %s\nmethod       %s\n", info.did.c_str(), info.method.c_str());
        if (info.ed25519_public)
          std::printf("public key   %s (Ed25519)\n", pk.c_str());
        else
          std::printf("public key   - (owner name only: cannot sign statements)\n");
        std::printf("codeword     %s (first 64 of 256 bits)\n", fp.c_str());
      }
      return kExitOk;
    };
  });
}

DIDMARK_CLI_COMMAND(10, register_id);
DIDMARK_CLI_COMMAND(11, register_did);

}  // namespace
}  // namespace didmark::cli
