// Runs the real imgproc binary as a child process for integration tests, and talks to it.
#ifndef IMGPROC_TESTS_SUPPORT_PROCESS_CLIENT_H_
#define IMGPROC_TESTS_SUPPORT_PROCESS_CLIENT_H_

#include <httplib.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace imgproc::testing {

// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
int FreePort();
// A socket listening on 127.0.0.1 at a free port, whose number goes to `port`; -1 on failure.
int ListenOnLoopback(int& port);

// A fresh, empty folder under the system temp dir, removed by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// What a finished command printed and how it ended.
struct CommandResult {
  int exit_code = -1;  // 128 + signal when killed; -1 when it did not finish in time (then killed)
  std::string out;     // stdout
  std::string err;     // stderr
};

// Runs the imgproc binary (IMGPROC_BINARY) with `args` in `cwd`, the test's environment plus
// `env`, stdin from /dev/null, and waits for it (killing it after `timeout`).
CommandResult RunImgproc(const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env,
                         const std::filesystem::path& cwd,
                         std::chrono::seconds timeout = std::chrono::seconds(60));

class ImgprocProcess {
 public:
  // `env` is added to the test's environment after PORT, BIND and DATA_DIR (= data_dir, which
  // also holds the process's log), so it may override them. `args` is the command line after the
  // binary: a worker process is {"worker"}.
  ImgprocProcess(std::filesystem::path data_dir, std::map<std::string, std::string> env,
                 std::vector<std::string> args = {"serve"});
  ~ImgprocProcess();  // SIGKILLs the process if it still runs

  // Starts the process and waits until it is ready: /healthz answers, or for a worker, its log
  // says it runs (so LOG_LEVEL must be info or lower). Returns false (with the log in `log()`) if
  // it exits or is not ready in 20 s.
  bool Start();
  void Signal(int sig);
  // Waits for the process to exit; returns its exit status (or -1 on timeout).
  int Wait(std::chrono::seconds timeout = std::chrono::seconds(30));
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  int port() const { return port_; }
  std::string BaseUrl() const;
  std::string log() const;  // everything it printed so far
  const std::filesystem::path& data_dir() const { return data_dir_; }

  // POST /api/p/upload/ with the CSV (and webhook_url when given).
  httplib::Result Upload(const std::string& csv, const std::string& webhook_url = "");
  // GET /status/<id>/ (with `query`, e.g. "?limit=0") as JSON (null if the request failed).
  nlohmann::json Status(const std::string& id, const std::string& query = "");
  // Polls the status until `done` holds for it (an object) or the timeout; returns the last
  // status seen.
  nlohmann::json WaitForStatus(const std::string& id,
                               const std::function<bool(const nlohmann::json&)>& done,
                               std::chrono::seconds timeout = std::chrono::seconds(60));
  // Until "completed", polling the counts only (?limit=0); then the whole status.
  nlohmann::json WaitForCompletion(const std::string& id,
                                   std::chrono::seconds timeout = std::chrono::seconds(60));
  // Until the webhook is settled ("delivered" or "failed"): the store has recorded its last
  // attempt, so what a receiver got is all it will get.
  nlohmann::json WaitForWebhook(const std::string& id,
                                std::chrono::seconds timeout = std::chrono::seconds(60));
  httplib::Result Get(const std::string& path_or_url);

 private:
  // Polls GET /status/<id>/<query> until `done` holds for it (an object) or the timeout; returns
  // the last answer seen.
  nlohmann::json PollStatus(const std::string& id, const std::string& query,
                            const std::function<bool(const nlohmann::json&)>& done,
                            std::chrono::seconds timeout);
  std::filesystem::path data_dir_;
  std::map<std::string, std::string> env_;
  std::vector<std::string> args_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace imgproc::testing

#endif  // IMGPROC_TESTS_SUPPORT_PROCESS_CLIENT_H_
