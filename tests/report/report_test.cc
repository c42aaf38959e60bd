#include "report/report.h"

#include <gtest/gtest.h>

namespace imgproc::report {
namespace {

request::RequestView Sample() {
  request::RequestView view;
  view.request_id = "r1";
  view.status = request::RequestStatus::kCompleted;
  view.images_total = 2;
  view.images_done = 1;
  view.images_failed = 1;
  request::ProductView p;
  p.serial_no = 7;
  p.product_name = "Shoe, \"red\"";
  p.input_urls = "http://a/0,http://a/1";
  p.output_urls = "http://o/0,";
  p.image_errors = {{1, "http://a/1", "HTTP 404", 2}};
  p.image_sizes = {{0, 1000, 100}};
  view.products = {p};
  return view;
}

TEST(Report, StatusHasTheSeedsShapeAndOurExtensions) {
  request::RequestView view = Sample();
  view.webhook = request::WebhookView{"delivered", 1, 204};
  EXPECT_EQ(
      StatusJson(view),
      R"({"request_id":"r1","status":"completed","progress":{"images_total":2,)"
      R"("images_done":1,"images_failed":1,"images_reused":0},"products":[{"Serial Number":7,)"
      R"("Product Name":"Shoe, \"red\"","Input Image Urls":"http://a/0,http://a/1",)"
      R"("Output Image Urls":"http://o/0,","Image Errors":[{"index":1,)"
      R"("url":"http://a/1","error":"HTTP 404","attempts":2}],"Image Retries":[],)"
      R"("Image Sizes":[{"index":0,"input_bytes":1000,"output_bytes":100,"reused":false}]}],)"
      R"("webhook":{"state":"delivered","attempts":1,"last_status":204}})");
}

TEST(Report, TheWebhookBodyIsTheFourKeysOnly) {
  request::RequestView view = Sample();
  view.products[0].output_urls.reset();
  EXPECT_EQ(WebhookJson(view),
            R"([{"Serial Number":7,"Product Name":"Shoe, \"red\"",)"
            R"("Input Image Urls":"http://a/0,http://a/1","Output Image Urls":null}])");
}

TEST(Report, InvalidUtf8IsReplacedNotThrown) {
  request::RequestView view = Sample();
  view.products[0].image_errors[0].error = "bad \xFF text";
  EXPECT_NE(StatusJson(view).find("bad \xEF\xBF\xBD text"), std::string::npos);
}

TEST(Report, TheOutputCsvEscapesCellsAndListsErrorsWhenAsked) {
  const request::RequestView view = Sample();
  EXPECT_EQ(OutputCsv(view, false),
            "Serial Number,Product Name,Input Image Urls,Output Image Urls\r\n"
            "7,\"Shoe, \"\"red\"\"\",\"http://a/0,http://a/1\",\"http://o/0,\"\r\n");
  EXPECT_EQ(OutputCsv(view, true),
            "Serial Number,Product Name,Input Image Urls,Output Image Urls,Errors\r\n"
            "7,\"Shoe, \"\"red\"\"\",\"http://a/0,http://a/1\",\"http://o/0,\","
            "#1 http://a/1: HTTP 404\r\n");
}

}  // namespace
}  // namespace imgproc::report
