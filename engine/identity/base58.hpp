#pragma once
// base58btc (the Bitcoin alphabet), as used by multibase 'z' and did:key
// (draft-msporny-base58). Leading zero bytes map to leading '1's and back.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace didmark::detail {

std::string base58btc_encode(std::span<const uint8_t> bytes);
/// Throws Errc::invalid_argument naming the first character outside the alphabet.
std::vector<uint8_t> base58btc_decode(std::string_view text);

}  // namespace didmark::detail
