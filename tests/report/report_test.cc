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

// A request with a variant: its settings, and per product the variant's URLs in the slots of
// "Output Image Urls" (a failed image's empty, a non-image entry unchanged), with each size's
// variants; the webhook has "Variants" too, and the CSV a column per variant.
TEST(Report, VariantsAreShownPerProductInStatusWebhookAndCsv) {
  request::RequestView view = Sample();
  view.outputs = *request::DecodePlan("jpeg-q50;thumb=webp-q70-400x400");
  request::ProductView& p = view.products[0];
  p.input_urls = "http://a/0,http://a/1,plain";
  p.output_urls = "http://o/0,,plain";
  p.image_sizes[0].variants = {{"thumb", "http://o/0_t.webp", 40, 400, 300}};
  const std::string status = StatusJson(view);
  EXPECT_NE(status.find(R"("Variants":{"thumb":"http://o/0_t.webp,,plain"})"), std::string::npos)
      << status;
  EXPECT_NE(status.find(R"("reused":false,"variants":{"thumb":{"output_bytes":40,"width":400,)"
                        R"("height":300,"url":"http://o/0_t.webp"}}})"),
            std::string::npos)
      << status;
  EXPECT_NE(status.find(R"("outputs":{"main":{"format":"jpeg","quality":50,"max_width":0,)"
                        R"("max_height":0,"progressive":false},"variants":{"thumb":{"format":)"
                        R"("webp","quality":70,"max_width":400,"max_height":400,)"
                        R"("progressive":false}}})"),
            std::string::npos)
      << status;
  EXPECT_EQ(WebhookJson(view), R"([{"Serial Number":7,"Product Name":"Shoe, \"red\"",)"
                               R"("Input Image Urls":"http://a/0,http://a/1,plain",)"
                               R"("Output Image Urls":"http://o/0,,plain",)"
                               R"("Variants":{"thumb":"http://o/0_t.webp,,plain"}}])");
  EXPECT_EQ(OutputCsv(view, false),
            "Serial Number,Product Name,Input Image Urls,Output Image Urls,thumb Image Urls\r\n"
            "7,\"Shoe, \"\"red\"\"\",\"http://a/0,http://a/1,plain\",\"http://o/0,,plain\","
            "\"http://o/0_t.webp,,plain\"\r\n");
  // Until the product is final its variants are null, as its outputs.
  p.output_urls.reset();
  EXPECT_NE(StatusJson(view).find(R"("Variants":{"thumb":null})"), std::string::npos);
  // The seed's plan shows neither "outputs" nor "Variants".
  view.outputs = request::OutputPlan{};
  EXPECT_EQ(StatusJson(view).find("\"Variants\""), std::string::npos);
  EXPECT_EQ(StatusJson(view).find("\"outputs\""), std::string::npos);
}

TEST(Report, PresetsAreListedWithTheirSettings) {
  EXPECT_EQ(PresetsJson({{"thumb", {request::OutputFormat::kAvif, 40, 300, 0, false}}}),
            R"({"presets":{"thumb":{"format":"avif","quality":40,"max_width":300,)"
            R"("max_height":0,"progressive":false}}})");
}

}  // namespace
}  // namespace imgproc::report
