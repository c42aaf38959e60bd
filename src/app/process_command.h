// `imgproc process input.csv -o output.csv`: the whole pipeline offline, without an HTTP server.
// The CSV is checked as an upload would be, its images are worked by the same worker pool over a
// throw-away SQLite store, and the output CSV is the one GET .../output.csv would return.
#ifndef IMGPROC_APP_PROCESS_COMMAND_H_
#define IMGPROC_APP_PROCESS_COMMAND_H_

#include <string>

#include "config/config.h"
#include "request/outputs.h"

namespace CLI {
class App;
}

namespace imgproc::app {

// The subcommand's own arguments (the settings come from config::AddFlags).
struct ProcessOptions {
  std::string input_csv;
  std::string output_csv;
  bool allow_failures = false;  // exit 0 even when some images failed
  bool errors_column = false;   // add the Errors column to the output CSV
  bool quiet = false;           // no progress, only the summary
  bool refresh = false;         // do not reuse the image cache's outputs (they are made anew)
  // What the images become, as an upload's form fields say it (request::ChooseOutputs).
  request::OutputFields outputs;
  bool progressive = false;     // --progressive, for outputs.progressive
  CLI::App* command = nullptr;  // set by AddProcessFlags: tells whether --log-level was given
};

// Adds the positional input, -o/--output, --allow-failures, --errors, --quiet, --refresh and the
// output settings (--format, --quality, --max-width, --max-height, --progressive, --presets) to
// `command`.
void AddProcessFlags(CLI::App& command, ProcessOptions& options);

// Runs the pipeline. Exit codes: 0 every image done (or --allow-failures), 1 some image failed,
// 2 unusable input or settings (the CSV's problems are printed row by row), 130 interrupted.
int RunProcess(const config::Config& config, const ProcessOptions& options);

}  // namespace imgproc::app

#endif  // IMGPROC_APP_PROCESS_COMMAND_H_
