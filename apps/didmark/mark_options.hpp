#pragma once
// Options shared by `didmark embed`, `verify` and `scan`: who the owners are (--id, --registry,
// --did), how marks are made (--scheme, --strength, --tensors, --p-threshold, --format) and
// the dataset options (--key-column, --columns, --gamma, --bits, --ids, --fixed-order). They
// fill one InputOptions; the library decides what applies to which input.
#include <string>
#include <vector>

#include "cli.hpp"
#include "didmark/inputs.hpp"

namespace didmark::cli {

struct MarkFlags {
  std::string id_file;
  std::string registry;
  std::string did;
  std::string scheme;     ///< empty: spread-spectrum to embed, auto to verify
  bool verifying = false;  ///< set by add_mark_options
  double strength = 0;    ///< 0: the scheme's (or format's) default
  double max_change = 0;  ///< 0: max(0.01, 2 x strength)
  double p_threshold = 1e-9;
  std::string tensors;
  std::string format;
  // datasets
  std::string key_column;
  std::string columns;
  uint32_t gamma = kDefaultTableGamma;
  uint32_t bits = kDefaultTableBits;
  std::string ids;
  bool fixed_order = false;
  std::string delimiter = "auto";
  // alignment sketches
  std::vector<std::string> sketches;  ///< verify/scan: --sketch (repeatable); embed: the one output
  double realign_z = RealignOptions{}.target_z;
  bool sketch_all = false;
  int sketch_samples = 0;
  int64_t sketch_rows = 0;
};

/// --scheme, --strength, --p-threshold, --tensors, --format and the dataset options.
/// `verifying`: --scheme defaults to auto (both schemes tested) instead of spread-spectrum.
void add_mark_options(CLI::App& cmd, MarkFlags& f, bool verifying = false);
/// --sketch-all, --sketch-samples, --sketch-rows (embed and `didmark sketch`).
void add_sketch_size_options(CLI::App& cmd, MarkFlags& f);
/// --id, or --registry with an optional --did (verify and scan).
void add_owner_options(CLI::App& cmd, MarkFlags& f, bool with_id, bool with_registry);

WatermarkOptions watermark_options(const MarkFlags& f);
InputOptions input_options(const MarkFlags& f);

/// The owner of an identity file: its DID, watermark key and DID codeword.
Owner owner_from_identity(const std::string& id_file);
/// The owners named by --id / --registry [--did]; errors when neither or both are given.
std::vector<Owner> resolve_owners(const MarkFlags& f);

}  // namespace didmark::cli
