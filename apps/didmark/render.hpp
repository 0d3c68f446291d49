#pragma once
// How the CLI says what the library did: JSON (a contract: field names are kept) and the
// human text of embed, verify and scan, for every kind of input.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "didmark/inputs.hpp"

namespace didmark::cli {

/// One verdict: did, status, detected, z, p_value, log10_p, bit_errors, bits, elements,
/// tensors, then the fields of its kind (checkpoints: scheme, seconds; tables: format, rows,
/// marked_rows, matches, duplicate_rows, bits_covered, seconds; arrays: format, rows, dim,
/// rows_skipped, duplicate_rows, seconds).
nlohmann::json verdict_json(const Verdict& v);

/// A verified file: {"path", "format", "detected": [DIDs], "verdicts": [...], "warnings"}.
nlohmann::json file_verdicts_json(const FileVerdicts& fv);

/// The human lines of a verified file.
std::string file_verdicts_text(const FileVerdicts& fv);

/// What embed wrote, as JSON (the fields of the input's kind) and as a human report.
nlohmann::json embed_json(const InputEmbedReport& r, const Owner& owner);
std::string embed_text(const InputEmbedReport& r, const Owner& owner);

}  // namespace didmark::cli
