#pragma once
// Alignment sketches in `didmark embed`, `verify` and `scan` (cmd_sketch.cpp adds the options
// and implements these). Each command calls one hook; without --sketch the hooks change nothing.
//
//   embed IN -o OUT --id ID.json --sketch SKETCH [--sketch-all]: writes the sketch of OUT;
//   verify/scan ... --sketch SKETCH...: owners that have a sketch are tested after realignment,
//   and every verdict gains `realigned` and `alignment` {tensors_matched, rows_moved, rows_dropped}.
#include <functional>
#include <string>
#include <vector>

#include "formats.hpp"

namespace didmark::cli {

/// Run `embed` (the format's embed of `job`), then write the sketch of its output when
/// --sketch was given. Checks the sketch's path before anything is written.
EmbedResult embed_with_sketch(const EmbedJob& job, const std::string& format, const std::function<EmbedResult()>& embed);

/// The verdicts of `job` with every owner that has a --sketch tested on the suspect realigned
/// to that sketch (unchanged when no --sketch was given).
std::vector<Verdict> realign_verdicts(const VerifyJob& job, const std::string& format, std::vector<Verdict> verdicts);

}  // namespace didmark::cli
