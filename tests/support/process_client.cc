#include "process_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

namespace imgproc::testing {

int FreePort() {
  int port = 0;
  const int fd = ListenOnLoopback(port);
  if (fd >= 0) close(fd);
  return port;
}

int ListenOnLoopback(int& port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(fd, SOMAXCONN) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  return fd;
}

TempDir::TempDir(const std::string& tag) {
  static int counter = 0;
  path_ = std::filesystem::temp_directory_path() /
          ("imgproc-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CommandResult RunImgproc(const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& extra_env,
                         const std::filesystem::path& cwd, std::chrono::seconds timeout) {
  CommandResult result;
  const char* binary = std::getenv("IMGPROC_BINARY");
  if (binary == nullptr) return result;
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : extra_env) env[k] = v;
  std::vector<std::string> strings;
  for (const auto& [k, v] : env) strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = {binary};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);

  const auto out_path = cwd / ".command.out";
  const auto err_path = cwd / ".command.err";
  const pid_t pid = fork();
  if (pid == 0) {
    if (chdir(cwd.c_str()) != 0) _exit(126);
    std::FILE* in = std::fopen("/dev/null", "r");
    std::FILE* out = std::fopen(out_path.c_str(), "w");
    std::FILE* err = std::fopen(err_path.c_str(), "w");
    if (in == nullptr || out == nullptr || err == nullptr) _exit(126);
    dup2(fileno(in), STDIN_FILENO);
    dup2(fileno(out), STDOUT_FILENO);
    dup2(fileno(err), STDERR_FILENO);
    execve(binary, argv.data(), envp.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  bool finished = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      finished = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!finished) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  } else {
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  auto slurp = [](const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  };
  result.out = slurp(out_path);
  result.err = slurp(err_path);
  std::error_code ec;
  std::filesystem::remove(out_path, ec);
  std::filesystem::remove(err_path, ec);
  return result;
}

ImgprocProcess::ImgprocProcess(std::filesystem::path data_dir,
                               std::map<std::string, std::string> env,
                               std::vector<std::string> args)
    : data_dir_(std::move(data_dir)), env_(std::move(env)), args_(std::move(args)) {}

ImgprocProcess::~ImgprocProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool ImgprocProcess::Start() {
  const char* binary = std::getenv("IMGPROC_BINARY");
  if (binary == nullptr) return false;
  if (port_ == 0) port_ = FreePort();  // keep the port across restarts: URLs stay valid

  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  env["PORT"] = std::to_string(port_);
  env["BIND"] = "127.0.0.1";
  env["DATA_DIR"] = data_dir_.string();
  for (const auto& [k, v] : env_) env[k] = v;
  std::vector<std::string> strings;
  for (const auto& [k, v] : env) strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  const std::string log_path = (data_dir_ / "imgproc.log").string();
  const size_t log_before = log().size();
  std::vector<char*> argv = {const_cast<char*>(binary)};
  for (auto& a : args_) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test binary that crashed
    std::FILE* log = std::fopen(log_path.c_str(), "a");
    if (log != nullptr) {
      dup2(fileno(log), STDOUT_FILENO);
      dup2(fileno(log), STDERR_FILENO);
    }
    execve(binary, argv.data(), envp.data());
    _exit(127);
  }
  httplib::Client client("127.0.0.1", port_);
  client.set_connection_timeout(0, 200'000);
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    if (args_.front() == "worker") {
      if (log().find("worker running", log_before) != std::string::npos) return true;
    } else if (auto res = client.Get("/healthz"); res && res->status == 200) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

void ImgprocProcess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

int ImgprocProcess::Wait(std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

std::string ImgprocProcess::BaseUrl() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::string ImgprocProcess::log() const {
  std::ifstream in(data_dir_ / "imgproc.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

httplib::Result ImgprocProcess::Upload(const std::string& csv, const std::string& webhook_url) {
  httplib::Client client("127.0.0.1", port_);
  client.set_read_timeout(30, 0);
  httplib::MultipartFormDataItems items = {{"csv_file", csv, "products.csv", "text/csv"}};
  if (!webhook_url.empty()) items.push_back({"webhook_url", webhook_url, "", ""});
  return client.Post("/api/p/upload/", items);
}

nlohmann::json ImgprocProcess::Status(const std::string& id, const std::string& query) {
  auto res = Get("/status/" + id + "/" + query);
  if (!res || res->status != 200) return nullptr;
  return nlohmann::json::parse(res->body, nullptr, false);
}

nlohmann::json ImgprocProcess::PollStatus(const std::string& id, const std::string& query,
                                          const std::function<bool(const nlohmann::json&)>& done,
                                          std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  nlohmann::json status;
  while (std::chrono::steady_clock::now() < deadline) {
    status = Status(id, query);
    if (status.is_object() && done(status)) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a poll, not a decision
  }
  return status;
}

nlohmann::json ImgprocProcess::WaitForStatus(const std::string& id,
                                             const std::function<bool(const nlohmann::json&)>& done,
                                             std::chrono::seconds timeout) {
  return PollStatus(id, "", done, timeout);
}

nlohmann::json ImgprocProcess::WaitForCompletion(const std::string& id,
                                                 std::chrono::seconds timeout) {
  // As a client of a big request does (docs/api.md): polls only the counts (?limit=0), and
  // reads the products once it is completed.
  PollStatus(
      id, "?limit=0", [](const nlohmann::json& s) { return s["status"] == "completed"; }, timeout);
  return Status(id);
}

nlohmann::json ImgprocProcess::WaitForWebhook(const std::string& id, std::chrono::seconds timeout) {
  return WaitForStatus(
      id,
      [](const nlohmann::json& s) {
        const auto hook = s.find("webhook");
        return hook != s.end() && ((*hook)["state"] == "delivered" || (*hook)["state"] == "failed");
      },
      timeout);
}

httplib::Result ImgprocProcess::Get(const std::string& path_or_url) {
  std::string path = path_or_url;
  const std::string base = BaseUrl();
  if (path.rfind(base, 0) == 0) path = path.substr(base.size());
  httplib::Client client("127.0.0.1", port_);
  client.set_read_timeout(30, 0);
  return client.Get(path);
}

}  // namespace imgproc::testing
