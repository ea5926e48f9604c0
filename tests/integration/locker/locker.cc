// A process CRIU refuses to dump while it holds a file lock (Docker does not pass CRIU's
// --file-locks). SIGUSR1 takes an flock on /held.lock, SIGUSR2 lets it go; a line on stdout
// says which state it is in.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <initializer_list>

namespace {
volatile sig_atomic_t want_lock = 0;
volatile sig_atomic_t stop = 0;

void on_signal(int signum) {
  if (signum == SIGUSR1) want_lock = 1;
  if (signum == SIGUSR2) want_lock = 0;
  if (signum == SIGTERM || signum == SIGINT) stop = 1;
}
}  // namespace

int main() {
  for (int signum : {SIGUSR1, SIGUSR2, SIGTERM, SIGINT}) std::signal(signum, on_signal);
  std::printf("ready\n");
  std::fflush(stdout);
  int fd = -1;
  while (!stop) {
    if (want_lock && fd < 0) {
      fd = open("/held.lock", O_CREAT | O_RDWR, 0600);
      if (fd < 0 || flock(fd, LOCK_EX) != 0) return 1;
      std::printf("locked\n");
      std::fflush(stdout);
    } else if (!want_lock && fd >= 0) {
      close(fd);
      fd = -1;
      std::printf("unlocked\n");
      std::fflush(stdout);
    }
    usleep(50 * 1000);
  }
  return 0;
}
