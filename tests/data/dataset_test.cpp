// SPDX-License-Identifier: MIT
// Dataset loaders on the real shared data, and malformed annotations giving errors that name
// the file and line (or counted skips where the dataset's own tools skip).
#include "autoassign/data/dataset.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "fixtures.h"

namespace autoassign {
namespace {
namespace fs = std::filesystem;

std::string data_dir() { return testing::shared_data_dir(); }

// Fails the test (not a skip) when ../shared/data is missing.
#define REQUIRE_DATA() ASSERT_FALSE(data_dir().empty())

TEST(Datasets, WiderFaceTrainAsPublished) {
  REQUIRE_DATA();
  auto ds = load_widerface(data_dir() + "/widerface", "train");
  size_t faces = 0, ignored = 0;
  for (const auto& s : ds.samples) {
    for (const auto& o : s.objects) (o.ignore ? ignored : faces) += 1;
  }
  // data/README.md: 1,593 images and 9,482 faces; "invalid" faces are kept as ignored.
  EXPECT_EQ(ds.samples.size(), 1593u);
  EXPECT_EQ(faces + ignored, 9482u);
  EXPECT_GT(ignored, 0u);
  EXPECT_EQ(ds.class_names, std::vector<std::string>{"face"});
  // The first entry of the official file: 1--Handshaking/..._409.jpg, one face 467 95 112 150.
  ASSERT_EQ(ds.samples[0].key, "1--Handshaking/1_Handshaking_Handshaking_1_409");
  ASSERT_EQ(ds.samples[0].objects.size(), 1u);
  EXPECT_EQ(ds.samples[0].objects[0].x1, 467);
  EXPECT_EQ(ds.samples[0].objects[0].y2, 95 + 150);
}

TEST(Datasets, Coco128) {
  REQUIRE_DATA();
  auto ds = load_coco(data_dir() + "/coco128/annotations/instances_train2017.json",
                      data_dir() + "/coco128/train2017");
  size_t objects = 0, crowd = 0;
  for (const auto& s : ds.samples) {
    for (const auto& o : s.objects) (o.ignore ? crowd : objects) += 1;
  }
  EXPECT_EQ(ds.samples.size(), 128u);
  EXPECT_EQ(objects + crowd, 939u);
  EXPECT_EQ(crowd, 10u);
  ASSERT_EQ(ds.class_names.size(), 80u);
  EXPECT_EQ(ds.class_names[0], "person");
  EXPECT_EQ(ds.class_names[79], "toothbrush");  // id 90 -> contiguous 79
}

TEST(Datasets, FaceMaskVocWithClassMap) {
  REQUIRE_DATA();
  auto ds =
      load_voc(data_dir() + "/facemask", parse_class_map("con_mascarilla=face,sin_mascarilla=face,"
                                                         "mascarilla_mal_puesta=face"));
  size_t faces = 0;
  for (const auto& s : ds.samples) faces += s.objects.size();
  EXPECT_EQ(ds.samples.size(), 853u);
  EXPECT_EQ(faces, 4072u);
  EXPECT_EQ(ds.class_names, std::vector<std::string>{"face"});
  // Without the third class, its objects are skipped and counted.
  auto partial = load_voc(data_dir() + "/facemask",
                          parse_class_map("con_mascarilla=face,sin_mascarilla=face"));
  EXPECT_EQ(partial.skipped.at("objects of unmapped class 'mascarilla_mal_puesta'"), 123);
  EXPECT_THROW(parse_class_map("a=b,c"), std::invalid_argument);
}

class BadWider : public ::testing::Test {
 protected:
  void SetUp() override {
    root = testing::temp_dir();
    fs::create_directories(root + "/wider_face_split");
    fs::create_directories(root + "/WIDER_train/images/0--Event");
    for (const char* name : {"a.jpg", "b.jpg"}) {
      std::ofstream(root + "/WIDER_train/images/0--Event/" + name) << "x";
    }
  }
  void write(const std::string& text) {
    std::ofstream(root + "/wider_face_split/wider_face_train_bbx_gt.txt") << text;
  }
  void expect_error(const std::string& text, const std::string& where, const std::string& what) {
    write(text);
    try {
      load_widerface(root, "train");
      FAIL() << "accepted:\n" << text;
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("wider_face_train_bbx_gt.txt:" + where), std::string::npos) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << msg;
    }
  }
  std::string root;
};

TEST_F(BadWider, GoodFileWithEmptyImageAndZeroSizeBox) {
  write(
      "0--Event/a.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n0--Event/b.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n5 5 0 7 0 "
      "0 0 0 0 0\n");
  auto ds = load_widerface(root, "train");
  ASSERT_EQ(ds.samples.size(), 2u);
  EXPECT_TRUE(ds.samples[0].objects.empty());
  ASSERT_EQ(ds.samples[1].objects.size(), 1u);
  EXPECT_EQ(ds.skipped.at("boxes with zero width or height"), 1);
}

TEST_F(BadWider, BadNumber) {
  expect_error("0--Event/a.jpg\n1\n1 2 x 4 0 0 0 0 0 0\n", "3", "not an integer: 'x'");
}
TEST_F(BadWider, BadCount) { expect_error("0--Event/a.jpg\nmany\n", "2", "face count"); }
TEST_F(BadWider, WrongFieldCount) {
  expect_error("0--Event/a.jpg\n1\n1 2 3 4\n", "3", "expected 10 numbers");
}
TEST_F(BadWider, Truncated) {
  expect_error("0--Event/a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", "4", "file ends");
}
TEST_F(BadWider, MissingImage) {
  expect_error("0--Event/zzz.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n", "1", "image file not found");
}

TEST(Datasets, BadCocoAndVoc) {
  const std::string dir = testing::temp_dir();
  std::ofstream(dir + "/bad.json") << "{\"images\": [], \"annotations\": [";
  EXPECT_THROW(load_coco(dir + "/bad.json", dir), std::runtime_error);
  // Out-of-range numbers are nlohmann's out_of_range, not a parse_error: still a named error.
  std::ofstream(dir + "/huge.json") << "{\"images\": [1e999]}";
  EXPECT_THROW(load_coco(dir + "/huge.json", dir), std::runtime_error);
  // Ids must be integers: a float id was cast to int64 without a check (undefined behaviour).
  std::ofstream(dir + "/float-id.json")
      << "{\"images\": [{\"id\": 1e300, \"file_name\": \"a.jpg\"}], \"annotations\": [], "
         "\"categories\": []}";
  try {
    load_coco(dir + "/float-id.json", dir);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("images[].id must be an integer"), std::string::npos)
        << e.what();
  }
  // Coordinates, sizes and areas must fit float, which boxes are stored in (the cast of 1e39
  // is undefined behaviour); a corner x + w beyond it too.
  std::ofstream(dir + "/a.jpg") << "x";
  for (const auto& [image, box, what] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"\"width\": 1e39", "[1, 2, 3, 4]", "images[].width must be a number within float"},
           {"\"width\": 9", "[1, 2, 1e39, 4]", "bbox[2] must be a number within float"},
           {"\"width\": 9", "[3e38, 2, 3e38, 4]", "bbox corner beyond float range"},
           {"\"width\": 9", "[1, 2, 3, \"4\"]", "bbox[3] must be a number"}}) {
    std::ofstream(dir + "/range.json")
        << "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\", " << image
        << "}], \"annotations\": [{\"id\": 7, \"image_id\": 1, \"category_id\": 1, \"bbox\": "
        << box << "}], \"categories\": [{\"id\": 1, \"name\": \"face\"}]}";
    try {
      load_coco(dir + "/range.json", dir);
      FAIL() << box << " accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  }
  std::ofstream(dir + "/noimages.json") << "{\"annotations\": [], \"categories\": []}";
  try {
    load_coco(dir + "/noimages.json", dir);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing array 'images'"), std::string::npos);
  }
  fs::create_directories(dir + "/voc/annotations");
  fs::create_directories(dir + "/voc/images");
  std::ofstream(dir + "/voc/images/a.jpg") << "x";
  std::ofstream(dir + "/voc/annotations/a.xml")
      << "<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox><xmin>1</xmin>"
         "<ymin>2</ymin><xmax>oops</xmax><ymax>9</ymax></bndbox></object></annotation>";
  try {
    load_voc(dir + "/voc", {});
    FAIL();
  } catch (const std::runtime_error& e) {
    // file:line: what
    EXPECT_NE(std::string(e.what()).find("a.xml:1: object 'cat': bad or missing <xmax>"),
              std::string::npos)
        << e.what();
  }
  // nan and inf parse as doubles but are no coordinates: named like any bad number; nor a
  // finite double beyond float's range, which boxes are stored in.
  for (const char* bad : {"nan", "inf", "-inf", "1e999", "1e39", "-3.5e38"}) {
    std::ofstream(dir + "/voc/annotations/a.xml")
        << "<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox><xmin>1</xmin>"
           "<ymin>2</ymin><xmax>"
        << bad << "</xmax><ymax>9</ymax></bndbox></object></annotation>";
    try {
      load_voc(dir + "/voc", {});
      FAIL() << bad << " accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("bad or missing <xmax>"), std::string::npos) << e.what();
    }
  }
  // A truncated file (an <object> never closed), its line counted from the top.
  std::ofstream(dir + "/voc/annotations/a.xml")
      << "<annotation>\n<filename>a.jpg</filename>\n\n<object><name>cat</name>\n";
  try {
    load_voc(dir + "/voc", {});
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("a.xml:4: unterminated <object>"), std::string::npos)
        << e.what();
  }
  // A missing image.
  std::ofstream(dir + "/voc/annotations/a.xml")
      << "<annotation><filename>gone.jpg</filename></annotation>";
  try {
    load_voc(dir + "/voc", {});
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("image file not found"), std::string::npos) << e.what();
  }
}

TEST(Datasets, CocoTypeErrorsNameTheFile) {
  const std::string dir = testing::temp_dir();
  std::ofstream(dir + "/a.jpg") << "x";
  std::ofstream(dir + "/typo.json")
      << R"({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "c"}],
             "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": ["1", 2, 3, 4]}]})";
  try {
    load_coco(dir + "/typo.json", dir);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("typo.json: malformed COCO annotations"),
              std::string::npos)
        << e.what();
  }
}

TEST(Datasets, BoxesOutsideTheImageAreSkippedOrClippedAndCounted) {
  const std::string dir = testing::temp_dir();
  std::ofstream(dir + "/a.jpg") << "x";
  // A 100x50 image: one box inside, one partly outside (clipped), one wholly outside.
  std::ofstream(dir + "/out.json") << R"({
    "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}],
    "categories": [{"id": 1, "name": "c"}],
    "annotations": [
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 300},
      {"id": 2, "image_id": 1, "category_id": 1, "bbox": [90, 40, 20, 20], "area": 400},
      {"id": 3, "image_id": 1, "category_id": 1, "bbox": [200, 10, 5, 5], "area": 25}]})";
  auto ds = load_coco(dir + "/out.json", dir);
  ASSERT_EQ(ds.samples[0].objects.size(), 2u);
  EXPECT_EQ(ds.skipped.at("boxes outside the image"), 1);
  EXPECT_EQ(ds.skipped.at("boxes clipped to the image (partly outside)"), 1);
  const auto& clipped = ds.samples[0].objects[1];
  EXPECT_FLOAT_EQ(clipped.x1, 90);
  EXPECT_FLOAT_EQ(clipped.y1, 40);
  EXPECT_FLOAT_EQ(clipped.x2, 100);
  EXPECT_FLOAT_EQ(clipped.y2, 50);
  // COCO's own area is kept for the S/M/L ranges (300, not the box's 400).
  EXPECT_FLOAT_EQ(ds.samples[0].objects[0].area, 300);
}

}  // namespace
}  // namespace autoassign
