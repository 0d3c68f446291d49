#pragma once
// How the CLI says what the library did in words: the human text of embed and verify for every
// kind of input. (The JSON comes from the library, shared with Python and the server.)
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "didmark/inputs.hpp"

namespace didmark::cli {

/// The human lines of a verified file.
std::string file_verdicts_text(const FileVerdicts& fv);

/// What embed wrote, as a human report (the JSON is the library's embed_report_json).
std::string embed_text(const InputEmbedReport& r, const Owner& owner);

/// One line about a sketch written (from the library's sketch_json).
std::string sketch_text(const nlohmann::json& j);

/// A library JSON text as a value, to print or to extend.
inline nlohmann::json as_json(const std::string& text) { return nlohmann::json::parse(text); }

}  // namespace didmark::cli
