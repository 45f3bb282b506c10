// Host only: collects what TFLM logs while a LogCapture lives, so that a
// failure is reported as one line. TFLM's host DebugLog is
// vfprintf(stderr, ...), and glibc's `stderr` is an ordinary variable
// that can point at a memory stream meanwhile. Sanitizer reports do not go
// through it (they write to file descriptor 2), so they are never hidden.
#ifndef MCUFORMER_RUNNER_LOG_CAPTURE_H_
#define MCUFORMER_RUNNER_LOG_CAPTURE_H_

#include <cstdio>
#include <cstdlib>
#include <string>

namespace mcuformer_runner {

class LogCapture {
 public:
  LogCapture() : saved_(stderr), stream_(open_memstream(&text_, &size_)) {
    if (stream_ != nullptr) stderr = stream_;
  }
  ~LogCapture() {
    Stop();
    std::free(text_);
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  // The log so far, its lines joined by " | " (for a one-line error).
  std::string OneLine() {
    if (stream_ != nullptr) std::fflush(stream_);
    std::string line, current;
    for (size_t i = 0; i <= size_; ++i) {
      if (i < size_ && text_[i] != '\n' && text_[i] != '\r') {   // TFLM ends its lines with "\r\n"
        current += text_[i];
      } else if (!current.empty()) {
        line += (line.empty() ? "" : " | ") + current;
        current.clear();
      }
    }
    return line;
  }

  // Stops capturing; `replay` writes what was logged to the real stderr.
  void Stop(bool replay = false) {
    if (stream_ == nullptr) return;
    std::fclose(stream_);
    stream_ = nullptr;
    stderr = saved_;
    if (replay && size_ != 0) std::fwrite(text_, 1, size_, stderr);
  }

 private:
  FILE* saved_;
  char* text_ = nullptr;
  size_t size_ = 0;
  FILE* stream_;
};

}  // namespace mcuformer_runner

#endif  // MCUFORMER_RUNNER_LOG_CAPTURE_H_
