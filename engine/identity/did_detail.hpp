#pragma once
#include <string_view>

namespace didmark::detail {
/// parse_did()'s checks without building a DidInfo (for bulk validation of payees).
void validate_did(std::string_view did);
}  // namespace didmark::detail
