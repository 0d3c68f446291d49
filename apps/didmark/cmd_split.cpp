// `didmark split` (exact royalty payouts, optionally a signed statement) and
// `didmark statement verify`.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli.hpp"
#include "common/atomic_file.hpp"
#include "common/printable.hpp"
#include "didmark/certificate.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "didmark/royalty.hpp"

namespace didmark::cli {
namespace {

struct SplitArgs {
  std::string revenue;
  std::string weights;
  std::string policy;
  std::string negative;
  std::string fallback;
  std::string sign;
  std::string output;
  std::string unit;
  std::string timestamp;
  bool force = false;
  int top = 20;
};

// Percentage of a in total with two decimals, exactly (no floating point).
std::string percent(Amount a, Amount total) {
  if (total == 0) return "-";
  // a * 10000 / total may overflow for huge amounts: scale down both first.
  while (a > kMaxAmount / 10000) {
    a >>= 1;
    total >>= 1;
  }
  const Amount bp = (a * 10000 + total / 2) / total;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llu.%02llu%%", static_cast<unsigned long long>(bp / 100),
                static_cast<unsigned long long>(bp % 100));
  return buf;
}

// The cascade the flags describe (weights, policy, --negative, --fallback).
CascadeResult split_of(const SplitArgs& a, Amount revenue) {
  DIDMARK_EXPECTS(!a.weights.empty() || !a.policy.empty(), invalid_argument,
                  "give the payees' weights with --weights W.json (or a --policy whose levels name their weights)");
  std::optional<NegativeWeights> negative;
  if (!a.negative.empty()) {
    negative = parse_negative_weights(a.negative);
    DIDMARK_EXPECTS(negative.has_value(), invalid_argument, "--negative '", a.negative,
                    "' is not one of clip, shift, refuse");
  }
  std::optional<std::string> fallback;
  if (!a.fallback.empty()) fallback = parse_did(a.fallback).did;
  std::vector<Payee> input;
  if (!a.weights.empty()) input = load_weights(a.weights);
  Policy policy = a.policy.empty() ? single_level_policy(std::move(input)) : load_policy(a.policy, input);
  if (negative) policy.negative = *negative;
  if (fallback) policy.fallback = fallback;
  return run_cascade(revenue, std::move(policy));
}

// Scores can be negative and money cannot: say what the clip did, so nobody reads a 0 as "forgotten".
nlohmann::json split_warnings(const CascadeResult& res) {
  nlohmann::json warnings = nlohmann::json::array();
  if (res.policy->negative != NegativeWeights::clip) return warnings;
  for (const auto& l : res.policy->levels) {
    std::vector<std::string> clipped;
    for (const auto& p : l.payees)
      if (p.weight.sign() < 0) clipped.push_back(p.did);
    if (!clipped.empty())
      warnings.push_back(detail::concat(clipped.size(), " negative weight(s) clipped to 0 in level '", l.name, "' (",
                                        detail::bounded_list(clipped, 3),
                                        "): they are paid nothing; --negative shift or refuse to decide otherwise"));
  }
  return warnings;
}

struct SignedStatement {
  std::string text, proof_value, created;
};

SignedStatement sign_statement(const CascadeResult& res, const Identity& op, const SplitArgs& a) {
  StatementOptions so;
  DIDMARK_EXPECTS(a.timestamp.empty() || parse_rfc3339(a.timestamp).has_value(), invalid_argument, "--timestamp '",
                  detail::printable(a.timestamp, 64), "' is not an RFC 3339 date-time (e.g. 2026-12-03T14:00:00Z)");
  so.timestamp = a.timestamp;
  so.unit = a.unit;
  SignedStatement st;
  st.text = make_statement(res, op, so);
  if (!a.output.empty()) detail::write_file_atomically(a.output, st.text, a.force, 0644);
  const auto pv = st.text.find("\"proofValue\":\"");
  if (pv != std::string::npos) st.proof_value = st.text.substr(pv + 14, st.text.find('"', pv + 14) - pv - 14);
  const auto cr = st.text.find("\"created\":\"");
  if (cr != std::string::npos) st.created = st.text.substr(cr + 11, st.text.find('"', cr + 11) - cr - 11);
  return st;
}

nlohmann::json split_json(const CascadeResult& res, Amount revenue, const SplitArgs& a, const Identity* op,
                          const SignedStatement& st, nlohmann::json warnings) {
  nlohmann::json payouts = nlohmann::json::object();
  nlohmann::json payees = nlohmann::json::array();
  for (const Payout& p : res.payees) {
    const std::string did(p.did);
    payouts[did] = amount_to_string(p.amount);
    nlohmann::json path = nlohmann::json::array();
    for (const auto& s : res.path(p.did))
      path.push_back({{"level", res.levels[s.level].name}, {"amount", amount_to_string(s.amount)}});
    payees.push_back({{"did", did}, {"total", amount_to_string(p.amount)}, {"path", std::move(path)}});
  }
  nlohmann::json levels = nlohmann::json::array();
  for (const auto& l : res.levels)
    levels.push_back({{"name", l.name},
                      {"received", amount_to_string(l.received)},
                      {"kept", amount_to_string(l.kept)},
                      {"passed", amount_to_string(l.passed)}});
  nlohmann::json out{{"revenue", amount_to_string(revenue)},
                     {"rule", "didmark/largest-remainder/v1"},
                     {"negative_weights", std::string(negative_weights_name(res.policy->negative))},
                     {"payouts", std::move(payouts)},
                     {"payees", std::move(payees)},
                     {"levels", std::move(levels)},
                     {"warnings", std::move(warnings)}};
  if (!a.unit.empty()) out["unit"] = a.unit;
  if (op) {
    out["statement"] = {
        {"issuer", op->did()}, {"created", st.created}, {"proof_value", st.proof_value}, {"bytes", st.text.size()}};
    if (!a.output.empty()) out["statement"]["file"] = a.output;
  }
  return out;
}

void print_split(const CascadeResult& res, Amount revenue, const SplitArgs& a, const Identity* op,
                 const SignedStatement& st, const nlohmann::json& warnings, bool quiet) {
  const std::string unit = a.unit.empty() ? std::string("minor units") : a.unit;
  std::printf("split %s %s among %zu payees (%zu level%s, rule: largest remainder, ties to the smaller DID)\n",
              amount_to_string(revenue).c_str(), unit.c_str(), res.payees.size(), res.levels.size(),
              res.levels.size() == 1 ? "" : "s");
  if (res.levels.size() > 1)
    for (std::size_t k = 0; k < res.levels.size(); ++k) {
      const auto& l = res.levels[k];
      std::printf("  level %zu %-24s received %s, kept %s, passed on %s\n", k + 1, ("'" + l.name + "'").c_str(),
                  amount_to_string(l.received).c_str(), amount_to_string(l.kept).c_str(),
                  amount_to_string(l.passed).c_str());
    }
  // The largest payees first (ties by DID); --json keeps the DID order.
  std::vector<std::size_t> order(res.payees.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t x, std::size_t y) { return res.payees[x].amount > res.payees[y].amount; });
  const std::size_t shown = std::min(order.size(), static_cast<std::size_t>(std::max(a.top, 0)));
  std::size_t width = 5;
  for (std::size_t i = 0; i < shown; ++i) width = std::max(width, res.payees[order[i]].did.size());
  std::printf("  %-*s %24s %9s\n", static_cast<int>(width), "payee", "amount", "share");
  for (std::size_t i = 0; i < shown; ++i) {
    const Payout& p = res.payees[order[i]];
    std::printf("  %-*.*s %24s %9s\n", static_cast<int>(width), static_cast<int>(p.did.size()), p.did.data(),
                amount_to_string(p.amount).c_str(), percent(p.amount, revenue).c_str());
  }
  if (shown < order.size())
    std::printf("  ... %zu more (--top N shows more, --json shows all)\n", order.size() - shown);
  for (const auto& w : warnings) std::printf("note: %s\n", w.get<std::string>().c_str());
  if (op) {
    std::printf("statement: VC 2.0, eddsa-jcs-2022, issuer %s, created %s, %zu bytes%s%s\n", op->did().c_str(),
                st.created.c_str(), st.text.size(), a.output.empty() ? "" : " -> ", a.output.c_str());
    if (a.output.empty() && !quiet) std::fprintf(stderr, "didmark: note: statement not written (give -o FILE)\n");
  }
}

int run_split(Globals& g, const SplitArgs& a) {
  const Amount revenue = parse_amount(a.revenue, "--revenue");
  DIDMARK_EXPECTS(a.output.empty() || !a.sign.empty(), invalid_argument,
                  "-o writes a signed statement: give the operator's identity with --sign IDFILE");
  DIDMARK_EXPECTS(a.timestamp.empty() || !a.sign.empty(), invalid_argument,
                  "--timestamp dates the signed statement: give the operator's identity with --sign IDFILE");
  // Load the signing identity first: a bad identity should fail before any work.
  std::optional<Identity> op;
  if (!a.sign.empty()) op = load_identity(a.sign);
  const CascadeResult res = split_of(a, revenue);
  const nlohmann::json warnings = split_warnings(res);
  const SignedStatement st = op ? sign_statement(res, *op, a) : SignedStatement{};
  if (g.json)
    print_json(split_json(res, revenue, a, op ? &*op : nullptr, st, warnings));
  else
    print_split(res, revenue, a, op ? &*op : nullptr, st, warnings, g.quiet);
  return kExitOk;
}

void register_split(CLI::App& app, Globals& g, Action& action) {
  auto a = std::make_shared<SplitArgs>();
  CLI::App* c = app.add_subcommand(
      "split",
      "Split a revenue exactly among payees by weight (largest remainder), optionally through a cascade "
      "policy, and sign the statement");
  c->add_option("--revenue", a->revenue,
                "Amount to split, a whole number of minor units (cents, wei, ...), up to 2^128 - 1")
      ->required();
  c->add_option("--weights", a->weights,
                "JSON object mapping payee DID to weight: a number (read as the exact IEEE double) or a "
                "decimal string for an exact decimal, e.g. {\"did:web:a.example\": 70, \"did:key:z6Mk...\": "
                "\"30.5\"}");
  c->add_option("--policy", a->policy,
                "Cascade policy (JSON): levels such as a platform fee, base-model owners, data contributors; "
                "each keeps keep_bps of what reaches it (see docs/royalty.md). Default: one level holding "
                "--weights");
  c->add_option("--negative", a->negative,
                "Negative weights: clip (count as 0), shift (subtract the smallest from all) or refuse "
                "(default: the policy's, else clip)");
  c->add_option("--fallback", a->fallback,
                "Payee DID that receives the amount when all weights are zero (default: refuse)");
  c->add_option("--sign", a->sign, "Operator identity file (did:key) that signs the statement");
  c->add_option("-o,--output", a->output,
                "Write the signed statement (W3C VC 2.0, eddsa-jcs-2022, canonical JSON) here; needs --sign");
  c->add_flag("-f,--force", a->force, "Replace the statement file if it exists");
  c->add_option("--unit", a->unit, "Label of the minor unit recorded in the statement, e.g. \"USD cents\"");
  c->add_option("--timestamp", a->timestamp,
                "Statement time, RFC 3339 UTC (e.g. 2026-11-25T12:00:00Z); default: now");
  c->add_option("--top", a->top, "Rows of the payee table to print, largest payees first (human output)")->capture_default_str();
  c->footer(
      "Payouts sum to exactly the revenue and do not depend on the order of the input. With --json the\n"
      "output's 'payouts' maps each payee DID to a decimal string (amounts exceed 2^53).\n"
      "Example: didmark split --revenue 5 --weights w.json --sign operator.id.json -o statement.json\n");
  c->callback([&g, &action, a] { action = [&g, a] { return run_split(g, *a); }; });
}

int run_verify(Globals& g, const std::string& file, bool allow_reformatted) {
  const std::string bytes = read_text_file(file, "statement");
  StatementCheck c;
  try {
    c = verify_statement(bytes);
  } catch (const Error& e) {
    DIDMARK_THROW(e.code(), "'", file, "': ", e.what());
  }
  DIDMARK_EXPECTS(c.is_credential, invalid_argument, "'", file,
                  "' is not a royalty statement (no '@context' and 'proof': statements are what 'didmark split "
                  "--sign ID -o FILE' writes)");
  if (allow_reformatted && !c.canonical_ok && c.signature_ok && c.payouts_ok) {
    c.valid = true;
    c.reason.clear();
  }
  if (g.json) {
    print_json({{"path", file},
                {"file", file},
                {"valid", c.valid},
                {"signature_ok", c.signature_ok},
                {"payouts_ok", c.payouts_ok},
                {"canonical_ok", c.canonical_ok},
                {"reason", c.reason},
                {"issuer", c.issuer},
                {"created", c.created},
                {"revenue", amount_to_string(c.revenue)},
                {"payees", c.payees},
                {"levels", c.levels}});
  } else if (c.valid) {
    std::printf("VALID: %s\n  signed by %s at %s (eddsa-jcs-2022)\n  revenue %s split among %zu payees in %zu level%s; "
                "payouts re-derived from the inputs\n",
                file.c_str(), c.issuer.c_str(), c.created.c_str(), amount_to_string(c.revenue).c_str(), c.payees,
                c.levels, c.levels == 1 ? "" : "s");
  } else {
    std::printf("INVALID: %s\n  %s\n", file.c_str(), c.reason.c_str());
  }
  return c.valid ? kExitOk : kExitNotDetected;
}

void register_statement(CLI::App& app, Globals& g, Action& action) {
  CLI::App& grp = command_group(app, "statement", "Signed royalty statements: verify one");
  auto file = std::make_shared<std::string>();
  auto allow = std::make_shared<bool>(false);
  CLI::App* c = grp.add_subcommand(
      "verify",
      "Check a statement: the eddsa-jcs-2022 signature by its issuer's did:key, the payouts re-derived from "
      "its inputs, and that the file is byte for byte the canonical form that was signed");
  c->add_option("FILE", *file, "Statement file written by 'didmark split -o'")->required();
  c->add_flag("--allow-reformatted", *allow,
              "Accept a file whose JSON was re-formatted (whitespace, member order) when the signature and "
              "payouts still check (default: any changed byte fails)");
  c->footer("Exit status: 0 valid, 1 the signature or payouts do not check, 2 the file cannot be read.\n");
  c->callback([&g, &action, file, allow] { action = [&g, file, allow] { return run_verify(g, *file, *allow); }; });
}

DIDMARK_CLI_COMMAND(60, register_split);
DIDMARK_CLI_COMMAND(61, register_statement);

}  // namespace
}  // namespace didmark::cli
