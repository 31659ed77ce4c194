// SPDX-License-Identifier: MIT
// The annotation readers (one target per format, chosen at compile time): the input becomes
// the annotation file of a dataset folder that holds one image, a.jpg (the seeds name it, so
// mutations get past the image check). Either a std::exception naming the problem, or a
// dataset whose boxes are finite and ordered (x1 <= x2, y1 <= y2).
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "autoassign/data/dataset.h"
#include "common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace autoassign;
  const std::string root = fuzz::scratch();
  static const bool made = [&] {
    for (const char* dir : {"/WIDER_train/images", "/images"}) {
      std::filesystem::create_directories(root + dir);
      std::ofstream(root + dir + "/a.jpg") << "not decoded by the readers";
    }
    std::filesystem::create_directories(root + "/annotations");
    return true;
  }();
  (void)made;
  Dataset ds;
  try {
#if defined(FUZZ_WIDERFACE)
    fuzz::write(root + "/wider_face_split/wider_face_train_bbx_gt.txt", data, size);
    ds = load_widerface(root, "train");
#elif defined(FUZZ_COCO)
    fuzz::write(root + "/coco.json", data, size);
    ds = load_coco(root + "/coco.json", root + "/images");
#elif defined(FUZZ_VOC)
    fuzz::write(root + "/annotations/a.xml", data, size);
    ds = load_voc(root, parse_class_map("face=face,mask=face"));
#else
#error "define FUZZ_WIDERFACE, FUZZ_COCO or FUZZ_VOC"
#endif
  } catch (const std::exception&) {
    return 0;
  }
  for (const auto& s : ds.samples) {
    for (const auto& a : s.objects) {
      if (!std::isfinite(a.x1) || !std::isfinite(a.y1) || !std::isfinite(a.x2) ||
          !std::isfinite(a.y2) || a.x1 > a.x2 || a.y1 > a.y2) {
        std::abort();
      }
      if (a.label < 0 || a.label >= static_cast<int>(ds.class_names.size())) std::abort();
    }
  }
  return 0;
}
