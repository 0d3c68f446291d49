// Exact royalty splits: Python ints in and out, through decimal text (amounts reach 2^128).
#include "bindings.hpp"
#include "common.hpp"
#include "didmark/error.hpp"
#include "didmark/royalty.hpp"

namespace didmark::python {
namespace {

// An int, a float, or a decimal string in JSON number syntax, all taken exactly.
Weight weight_of(const py::handle& w, const std::string& did) {
  DIDMARK_EXPECTS(!py::isinstance<py::bool_>(w), invalid_argument, "weight of '", did, "' is a bool, not a number");
  if (py::isinstance<py::str>(w)) return Weight::from_decimal(w.cast<std::string>());
  // Integers go through their decimal text so that values beyond 2^53 stay exact.
  if (py::isinstance<py::int_>(w)) return Weight::from_decimal(str_of(w));
  if (py::isinstance<py::float_>(w)) return Weight::from_double(w.cast<double>());
  DIDMARK_THROW(Errc::invalid_argument, "weight of '", did, "' must be an int, a float or a decimal string, not ",
                str_of(py::type::handle_of(w).attr("__name__")));
}

py::dict split_revenue(const py::int_& revenue, const py::handle& weights, const std::string& negative,
                       const std::optional<std::string>& fallback) {
  const Amount r = parse_amount(str_of(revenue), "revenue");
  DIDMARK_EXPECTS(py::hasattr(weights, "items"), invalid_argument, "weights must be a mapping {DID: weight}");
  std::vector<Payee> payees;
  for (const py::handle item : weights.attr("items")()) {
    const py::tuple kv = item.cast<py::tuple>();
    DIDMARK_EXPECTS(py::isinstance<py::str>(kv[0]), invalid_argument, "payee names must be DID strings, got ",
                    std::string(py::repr(kv[0])));
    const std::string did = kv[0].cast<std::string>();
    payees.push_back({did, weight_of(kv[1], did)});
  }
  SplitOptions o;
  const auto neg = parse_negative_weights(negative);
  DIDMARK_EXPECTS(neg.has_value(), invalid_argument, "negative '", negative, "' is not one of clip, shift, refuse");
  o.negative = *neg;
  o.fallback = fallback;
  const Payouts out = split(r, payees, o);
  // int(str) is exact at any size; PyLong_FromString does the same without a Python call.
  py::dict d;
  for (const Payout& p : out) {
    const std::string amount = amount_to_string(p.amount);
    d[py::str(std::string(p.did))] = py::reinterpret_steal<py::object>(PyLong_FromString(amount.c_str(), nullptr, 10));
  }
  return d;
}

}  // namespace

void bind_royalty(py::module_& m) {
  using namespace py::literals;
  m.def("split", &split_revenue, "revenue"_a, "weights"_a, py::kw_only(), "negative"_a = "clip",
        "fallback"_a = py::none(),
        "split(revenue, weights, *, negative='clip', fallback=None) -> dict[str, int]\n\n"
        "Split `revenue` (an int of minor units, 0 .. 2^128-1) among {DID: weight} by the largest-remainder "
        "rule (ties to the smaller DID). Weights are ints, floats (taken exactly) or decimal strings. "
        "negative: clip, shift or refuse; fallback: a DID that receives everything when all weights "
        "are zero. Returns {DID: amount} sorted by DID; the amounts sum to exactly `revenue`.");
}

}  // namespace didmark::python
