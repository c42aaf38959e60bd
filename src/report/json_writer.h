// JSON text written straight into a string, value after value, without building a tree first.
//
// The status of a request is its biggest body: a page of 100 products is about 120 KB, a whole
// catalogue megabytes. Built as an nlohmann::ordered_json tree and dumped, a page spent half of the
// API's CPU in the tree and its serializer (perf, under wrk -c1 on a 10,000-row request:
// dump_escaped 21%, freeing the tree 10%, allocations 11%). nlohmann has no writer that skips the
// tree, and its escaping decodes every byte; this one copies runs of plain ASCII whole.
//
// The text is what nlohmann's dump(-1, ' ', false, error_handler_t::replace) writes for the same
// values (tests/report/json_writer_test.cc checks it byte for byte): no spaces, non-ASCII left as
// UTF-8, each invalid UTF-8 sequence replaced by U+FFFD.
//
//   std::string out;
//   JsonWriter w(out);
//   w.BeginObject();
//   w.String("id", id);    // "id": "..."
//   w.BeginArray("tags");  // "tags": [
//   w.Int(1);
//   w.EndArray();
//   w.EndObject();
#ifndef IMGPROC_REPORT_JSON_WRITER_H_
#define IMGPROC_REPORT_JSON_WRITER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace imgproc::report {

class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  // In an array, or at the top: a value. In an object: the same with its key first.
  void BeginObject();
  void BeginObject(std::string_view key);
  void EndObject();
  void BeginArray();
  void BeginArray(std::string_view key);
  void EndArray();
  void String(std::string_view value);
  void String(std::string_view key, std::string_view value);
  void StringOrNull(std::string_view key, const std::optional<std::string>& value);
  void Int(int64_t value);
  void Int(std::string_view key, int64_t value);
  void IntOrNull(std::string_view key, const std::optional<int64_t>& value);
  void Bool(std::string_view key, bool value);
  void Null(std::string_view key);
  // An object's key, for a value written by a function that writes values alone.
  void Key(std::string_view key);

 private:
  // A comma before every value but the first of its object or array, and none after a key.
  void Separate();

  std::string& out_;
  bool comma_ = false;
};

// Appends `text` as a JSON string literal, quotes included.
void AppendJsonString(std::string& out, std::string_view text);

}  // namespace imgproc::report

#endif  // IMGPROC_REPORT_JSON_WRITER_H_
