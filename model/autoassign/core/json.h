// SPDX-License-Identifier: MIT
// JSON from users (model configs, model file headers, the camera service's config): parsed
// with a nesting limit and no repeated keys.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace autoassign {

/// `text` parsed, refusing nesting deeper than `max_depth` and a key given twice in one object
/// (both checked while parsing, before anything recursive sees the document). Throws
/// std::invalid_argument starting with `source`.
nlohmann::json parse_json_strict(const std::string& text, const std::string& source, int max_depth);

}  // namespace autoassign
