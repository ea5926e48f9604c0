// ckptd example app: a long-running process whose start-up is expensive, so that resuming it
// from a CRIU checkpoint is visibly cheaper than starting it again.
//
// Start-up builds an in-memory table (TABLE_MB MiB) and keeps verifying it until STARTUP_SECONDS
// have passed, printing lines that begin with "startup:". Then every STEP_MS it mutates a few
// table entries and prints "step=<n> checksum=<hex>". A TCP listener on PORT answers each
// connection with "step=<n>\n". SIGTERM or SIGINT ends it with status 0.
//
// With TICK_MS set, a fine-grained tick also runs every TICK_MS and measures the gap between two
// ticks: each gap longer than GAP_REPORT_MS is printed as "gap: <ms> ms ending at <unix time>",
// so the time the process was frozen (by a checkpoint, say) can be read from its output. SIGUSR1
// prints "gaps: longest=<ms> ms ticks=<n>" and starts a new measuring window.
//
// JOURNAL_FILE, when set, gets "step=<n>" appended every step through a descriptor kept open;
// SIGUSR2 (sent by `app save-state`, run with docker exec) writes the state to STATE_FILE.
//
// A restored process prints no "startup:" lines and its step counter continues; a restarted one
// prints the "startup:" lines again and counts from 1. The checksum at step n depends only on n
// and TABLE_MB, so it is the same in every run and after every restore.
//
// Single-threaded on purpose: poll() waits for the listener and the next step at once, so a
// signal always interrupts the one thread, and CRIU has one simple task to dump.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;

// Entries changed per step: enough for the checksum to depend on the table, few enough that a
// step costs microseconds whatever the table size.
constexpr int kMutationsPerStep = 64;
// Fixed seed, so that every run builds the same table and prints the same checksums.
constexpr std::uint64_t kSeed = 0x636b707464617070ULL;  // "ckptdapp"

volatile std::sig_atomic_t g_stop_signal = 0;
volatile std::sig_atomic_t g_report_gaps = 0;

void on_stop_signal(int sig) { g_stop_signal = sig; }
void on_report_signal(int) { g_report_gaps = 1; }

volatile std::sig_atomic_t g_save_requested = 0;

void on_save_signal(int) { g_save_requested = 1; }

// SplitMix64: a cheap, well-mixed 64-bit hash; all the app's "work" is made of it.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

double seconds_since(Clock::time_point t0) { return Seconds(Clock::now() - t0).count(); }

// Reads a numeric setting from the environment; a bad value stops the program rather than being
// silently replaced, so a typo in `docker run -e` is noticed at once.
double env_number(const char* name, double fallback, double min, double max) {
  const char* raw = std::getenv(name);
  if (raw == nullptr || *raw == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  double value = std::strtod(raw, &end);
  if (errno != 0 || *end != '\0' || !(value >= min && value <= max)) {
    std::fprintf(stderr, "error: %s=%s: expected a number from %.10g to %.10g\n", name, raw, min,
                 max);
    std::exit(2);
  }
  return value;
}

// Installs the stop handler without SA_RESTART, so that poll() returns EINTR at once.
void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sa.sa_handler = on_report_signal;
  sigaction(SIGUSR1, &sa, nullptr);
  sa.sa_handler = on_save_signal;
  sigaction(SIGUSR2, &sa, nullptr);
  // A client that closes early must not kill the process while we write to it.
  signal(SIGPIPE, SIG_IGN);
}

// Opens a non-blocking listening socket on 0.0.0.0:port; exits on failure.
int open_listener(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::perror("error: socket");
    std::exit(1);
  }
  int one = 1;
  // A restarted container may find the port's previous connections in TIME_WAIT.
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || listen(fd, 64) < 0) {
    std::fprintf(stderr, "error: listening on port %d: %s\n", port, std::strerror(errno));
    std::exit(1);
  }
  return fd;
}

// Answers every pending connection with the step counter and closes it straight away: CRIU
// cannot dump an established TCP connection without --tcp-established, which Docker does not
// pass, so no connection may outlive this call.
void answer_clients(int listener, std::uint64_t step) {
  char reply[32];
  int len = std::snprintf(reply, sizeof reply, "step=%" PRIu64 "\n", step);
  for (;;) {
    int client = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;  // EAGAIN: none left; anything else: the client gave up, skip it.
    // The reply is far smaller than a socket buffer, so one send() on a fresh socket takes it.
    if (send(client, reply, static_cast<std::size_t>(len), MSG_NOSIGNAL) < 0) {
      std::fprintf(stderr, "warning: answering a client: %s\n", std::strerror(errno));
    }
    close(client);
  }
}

// Fills the table and returns the XOR of all its entries, the checksum's starting value.
std::uint64_t build_table(std::vector<std::uint64_t>& table) {
  std::uint64_t xor_sum = 0;
  for (std::size_t i = 0; i < table.size(); ++i) {
    table[i] = mix(kSeed + i);
    xor_sum ^= table[i];
  }
  return xor_sum;
}

// Keeps reading the whole table until the deadline, printing progress each second. This is the
// pacing: start-up costs STARTUP_SECONDS of real CPU and memory traffic, not a sleep, and since
// it only reads, the table (hence every checksum) is the same however many passes fit.
void verify_table(const std::vector<std::uint64_t>& table, Clock::time_point t0,
                  double startup_seconds) {
  const Clock::time_point deadline =
      t0 + std::chrono::duration_cast<Clock::duration>(Seconds(startup_seconds));
  constexpr std::size_t kChunk = 1 << 17;  // 1 MiB of entries between clock checks
  std::uint64_t digest = 0;
  std::uint64_t passes = 0;
  int reported_second = 0;
  std::size_t i = 0;
  while (g_stop_signal == 0 && Clock::now() < deadline) {
    std::size_t end = std::min(i + kChunk, table.size());
    for (; i < end; ++i) digest = mix(digest ^ table[i]);
    if (i == table.size()) {
      i = 0;
      ++passes;
    }
    int second = static_cast<int>(seconds_since(t0));
    if (second > reported_second && second < startup_seconds) {
      reported_second = second;
      std::printf("startup: verifying table, %d of %.1f s\n", second, startup_seconds);
    }
  }
  // Printing the digest keeps the compiler from dropping the passes as dead code.
  std::printf("startup: verified table %" PRIu64 " times, digest=%016" PRIx64 "\n", passes,
              digest);
}

// Changes a few entries, chosen and rewritten from the step number and their old values, and
// keeps the XOR of all entries up to date: the result is a function of the whole history.
std::uint64_t mutate(std::vector<std::uint64_t>& table, std::uint64_t step,
                     std::uint64_t xor_sum) {
  for (int k = 0; k < kMutationsPerStep; ++k) {
    std::size_t idx = mix(step * kMutationsPerStep + k) % table.size();
    std::uint64_t old_value = table[idx];
    table[idx] = mix(old_value ^ step);
    xor_sum ^= old_value ^ table[idx];
  }
  return xor_sum;
}

double unix_seconds() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

// The fine-grained tick: the gaps between consecutive ticks. CLOCK_MONOTONIC runs on while the
// cgroup freezer holds the process, so a freeze shows up as one long gap.
struct GapMeter {
  Clock::duration period{};
  Clock::duration report_over{};
  Clock::time_point last{};
  Clock::time_point next{};
  double longest_ms = 0;
  std::uint64_t ticks = 0;

  bool enabled() const { return period.count() > 0; }

  void start(Clock::time_point now) {
    last = now;
    next = now + period;
  }

  void tick(Clock::time_point now) {
    double gap_ms = std::chrono::duration<double, std::milli>(now - last).count();
    ++ticks;
    longest_ms = std::max(longest_ms, gap_ms);
    if (now - last > report_over) {
      std::printf("gap: %.1f ms ending at %.3f\n", gap_ms, unix_seconds());
    }
    last = now;
    next += period;
    // After a long gap, tick again one period from now rather than in a burst.
    if (next <= now) next = now + period;
  }

  void report() {
    std::printf("gaps: longest=%.1f ms ticks=%" PRIu64 "\n", longest_ms, ticks);
    longest_ms = 0;
    ticks = 0;
  }
};

const char* state_file() {
  const char* path = std::getenv("STATE_FILE");
  return path != nullptr && *path != '\0' ? path : "/app-state.txt";
}

// Writes "step=<n> checksum=<hex>" to STATE_FILE through a temporary file and a rename, so a
// reader (or a checkpoint) never sees half a state.
void save_state(std::uint64_t step, std::uint64_t checksum) {
  const std::string path = state_file();
  const std::string partial = path + ".partial";
  std::FILE* out = std::fopen(partial.c_str(), "w");
  bool ok = out != nullptr &&
            std::fprintf(out, "step=%" PRIu64 " checksum=%016" PRIx64 "\n", step, checksum) > 0;
  ok = out != nullptr && std::fclose(out) == 0 && ok;
  if (ok && std::rename(partial.c_str(), path.c_str()) == 0) {
    std::printf("state: saved step=%" PRIu64 " to %s\n", step, path.c_str());
  } else {
    std::fprintf(stderr, "warning: saving state to %s: %s\n", path.c_str(), std::strerror(errno));
  }
}

// `app save-state`, run inside the container (docker exec): asks the app (pid 1) for its state
// with SIGUSR2 and waits until STATE_FILE is replaced. Exit 0 once saved, 1 after 5 s without.
int command_save_state() {
  struct stat before {};
  const bool existed = stat(state_file(), &before) == 0;
  if (kill(1, SIGUSR2) != 0) {
    std::fprintf(stderr, "error: signalling pid 1: %s\n", std::strerror(errno));
    return 1;
  }
  for (int i = 0; i < 500; ++i) {
    struct stat now {};
    if (stat(state_file(), &now) == 0 && (!existed || now.st_ino != before.st_ino)) {
      std::printf("saved %s\n", state_file());
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "error: %s not saved within 5 s\n", state_file());
  return 1;
}

// Commands for `docker exec` (the image has no shell): save-state, and sleep SECONDS.
int run_command(int argc, char** argv) {
  const std::string command = argv[1];
  if (command == "save-state" && argc == 2) return command_save_state();
  if (command == "sleep" && argc == 3) {
    std::this_thread::sleep_for(Seconds(std::strtod(argv[2], nullptr)));
    return 0;
  }
  std::fprintf(stderr, "error: unknown command; expected: save-state | sleep SECONDS\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) return run_command(argc, argv);
  // Line-buffered even into the pipe Docker gives us, so `docker logs` shows each line at once.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  install_signal_handlers();

  const double startup_seconds = env_number("STARTUP_SECONDS", 10, 0, 86400);
  const auto table_mb = static_cast<std::size_t>(env_number("TABLE_MB", 64, 1, 65536));
  const auto step_ms = static_cast<long>(env_number("STEP_MS", 500, 1, 3600 * 1000));
  const int port = static_cast<int>(env_number("PORT", 8080, 1, 65535));
  const auto tick_ms = static_cast<long>(env_number("TICK_MS", 0, 0, 60000));
  const double gap_report_ms = env_number("GAP_REPORT_MS", 5.0 * tick_ms, 0, 3600 * 1000);
  // JOURNAL_FILE: append every step line there too, through a descriptor kept open (a file that
  // grows while the app runs, as a real application's data files do).
  const char* journal_path = std::getenv("JOURNAL_FILE");
  int journal = -1;
  if (journal_path != nullptr && *journal_path != '\0') {
    // Read-write, as a data file is: CRIU then checks its size on restore (write-only logs it
    // does not), so a restore needs the file as it was at the dump.
    journal = open(journal_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (journal < 0) {
      std::fprintf(stderr, "error: JOURNAL_FILE=%s: %s\n", journal_path, std::strerror(errno));
      return 2;
    }
  }


  const Clock::time_point t0 = Clock::now();
  std::printf("startup: pid %d, port %d, step every %ld ms\n", getpid(), port, step_ms);
  std::printf("startup: building table %zu MiB\n", table_mb);
  std::vector<std::uint64_t> table(table_mb * (1024 * 1024 / sizeof(std::uint64_t)));
  std::uint64_t checksum = build_table(table);
  std::printf("startup: table built in %.1f s, checksum=%016" PRIx64 "\n", seconds_since(t0),
              checksum);
  verify_table(table, t0, startup_seconds);
  if (g_stop_signal != 0) {
    std::printf("stopping: signal %d during start-up\n", static_cast<int>(g_stop_signal));
    return 0;
  }

  // Listen only once ready: a connection that succeeds means the app is up.
  const int listener = open_listener(port);
  std::printf("startup: ready after %.1f s, listening on 0.0.0.0:%d\n", seconds_since(t0), port);

  const auto step_period = std::chrono::milliseconds(step_ms);
  std::uint64_t step = 0;
  Clock::time_point next_step = Clock::now() + step_period;
  GapMeter gaps;
  gaps.period = std::chrono::milliseconds(tick_ms);
  gaps.report_over = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(gap_report_ms));
  gaps.start(Clock::now());
  while (g_stop_signal == 0) {
    Clock::time_point now = Clock::now();
    if (g_report_gaps != 0) {
      g_report_gaps = 0;
      gaps.report();
    }
    if (gaps.enabled() && now >= gaps.next) {
      gaps.tick(now);
      continue;
    }
    if (now >= next_step) {
      ++step;
      checksum = mutate(table, step, checksum);
      std::printf("step=%" PRIu64 " checksum=%016" PRIx64 "\n", step, checksum);
      if (journal >= 0) {
        char line[64];
        int len = std::snprintf(line, sizeof line, "step=%" PRIu64 "\n", step);
        if (write(journal, line, static_cast<std::size_t>(len)) != len) {
          std::fprintf(stderr, "warning: writing JOURNAL_FILE: %s\n", std::strerror(errno));
        }
      }
      next_step += step_period;
      // After a restore the monotonic clock has jumped by the time spent checkpointed (or, on
      // another host, to anything at all). Resynchronise instead of printing a burst of steps
      // to catch up, or waiting for a deadline that is far away.
      if (next_step <= now || next_step > now + step_period) next_step = now + step_period;
      continue;
    }

    if (g_save_requested != 0) {
      g_save_requested = 0;
      save_state(step, checksum);
      continue;
    }

    // Round up so that poll() does not wake a little early and spin until the deadline.
    Clock::time_point wake = gaps.enabled() ? std::min(next_step, gaps.next) : next_step;
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(wake - now);
    pollfd pfd{listener, POLLIN, 0};
    int ready = poll(&pfd, 1, static_cast<int>(wait.count()));
    if (ready > 0) answer_clients(listener, step);
    // ready < 0 is EINTR from the stop signal; the loop condition sees it.
  }

  std::printf("stopping: signal %d at step=%" PRIu64 "\n", static_cast<int>(g_stop_signal), step);
  close(listener);
  return 0;
}
