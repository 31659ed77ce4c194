/* SPDX-License-Identifier: MIT */
#include "frame_json.h"

namespace autoassign::gst {

nlohmann::json roi_to_json(const Roi& r) {
  nlohmann::json o = {{"x", r.x}, {"y", r.y}, {"w", r.w}, {"h", r.h}, {"roi_type", r.roi_type}};
  if (r.object_id >= 0) o["id"] = r.object_id;
  if (r.has_detection) {
    o["detection"] = {
        {"bounding_box",
         {{"x_min", r.x_min}, {"y_min", r.y_min}, {"x_max", r.x_max}, {"y_max", r.y_max}}},
        {"confidence", r.confidence},
        {"label", r.label},
        {"label_id", r.label_id}};
  }
  return o;
}

nlohmann::json frame_to_json(GstBuffer* buffer, const std::vector<Roi>& rois, int width, int height,
                             const std::string& source) {
  nlohmann::json frame;
  const GstClockTime pts = GST_BUFFER_PTS(buffer);
  frame["timestamp"] = GST_CLOCK_TIME_IS_VALID(pts) ? static_cast<int64_t>(pts) : -1;
  frame["resolution"] = {{"width", width}, {"height", height}};
  if (!source.empty()) frame["source"] = source;
  frame["objects"] = nlohmann::json::array();
  for (const auto& r : rois) frame["objects"].push_back(roi_to_json(r));
  return frame;
}

// JSON must be valid UTF-8: read_rois and the json element's source property clean their text
// (invalid bytes become U+FFFD), and dump() replaces rather than throws as a last line of
// defence.
std::string json_text(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace autoassign::gst
