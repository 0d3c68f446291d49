#pragma once
// Moved to engine/common/printable.hpp (used beyond io).
#include "common/printable.hpp"
