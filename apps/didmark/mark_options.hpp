#pragma once
// Options shared by `didmark embed`, `verify` and `scan`: who the owners are (--id, --registry,
// --did) and how marks are made (--scheme, --strength, --tensors, --p-threshold, --format).
#include <string>
#include <vector>

#include "cli.hpp"
#include "formats.hpp"

namespace didmark::cli {

struct MarkFlags {
  std::string id_file;
  std::string registry;
  std::string did;
  std::string scheme = "spread-spectrum";
  double strength = 0;  ///< 0: the scheme's (or format's) default
  double max_change = 0;  ///< 0: max(0.01, 2 x strength)
  double p_threshold = 1e-9;
  std::string tensors;
  std::string format;
};

/// --scheme, --strength, --p-threshold, --tensors, --format.
void add_mark_options(CLI::App& cmd, MarkFlags& f);
/// --id, or --registry with an optional --did (verify and scan). `registry_only` leaves --id out.
void add_owner_options(CLI::App& cmd, MarkFlags& f, bool with_id, bool with_registry);

WatermarkOptions watermark_options(const MarkFlags& f);

/// The owner of an identity file: its DID, watermark key and DID codeword.
Owner owner_from_identity(const std::string& id_file);
/// The owners named by --id / --registry [--did]; errors when neither or both are given.
std::vector<Owner> resolve_owners(const MarkFlags& f);

/// The verdict of a VerifyReport for an owner.
Verdict verdict_of(const Owner& o, const VerifyReport& r);

/// One JSON object for a verified file: {"path", "format", "detected": [dids], "verdicts"}.
nlohmann::json verified_file_json(const std::string& path, const std::string& format,
                                  const std::vector<Verdict>& verdicts);

}  // namespace didmark::cli
