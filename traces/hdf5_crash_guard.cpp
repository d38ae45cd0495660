#include "traces/hdf5_crash_guard.h"

#include <unistd.h>
#include <csignal>
#include <mutex>

namespace kvsim {
namespace {

thread_local const std::string* active_message = nullptr;  // the innermost guard's, on this thread
struct sigaction previous_segv {};
struct sigaction previous_bus {};

void forward(const struct sigaction& previous, int signal, siginfo_t* info, void* context) {
  if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction != nullptr) {
    previous.sa_sigaction(signal, info, context);
    return;
  }
  if (previous.sa_handler != SIG_IGN && previous.sa_handler != SIG_DFL && previous.sa_handler != nullptr) {
    previous.sa_handler(signal);
    return;
  }
  // Default action: restore it and return; the faulting instruction runs again and kills the process.
  std::signal(signal, SIG_DFL);
}

void on_fault(int signal, siginfo_t* info, void* context) {
  if (const std::string* message = active_message) {
    // write() and _exit() are async-signal-safe; nothing here allocates or locks.
    const ssize_t ignored = ::write(STDERR_FILENO, message->data(), message->size());
    static_cast<void>(ignored);
    ::_exit(2);
  }
  forward(signal == SIGBUS ? previous_bus : previous_segv, signal, info, context);
}

void install_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &previous_segv);
    sigaction(SIGBUS, &action, &previous_bus);
  });
}

}  // namespace

Hdf5CrashGuard::Hdf5CrashGuard(const std::string& path)
    : message_("kvsim: error: " + path +
               ": libhdf5 crashed reading it (a corrupt or hostile file: e.g. a global-heap size field out of "
               "range); expected a kvsim trace file, format version 1\n"),
      previous_(active_message) {
#ifndef KVSIM_FUZZING  // fuzz builds want the sanitizer's report, with its stack (CMakeLists.txt)
  install_once();
#endif
  active_message = &message_;
}

Hdf5CrashGuard::~Hdf5CrashGuard() { active_message = previous_; }

}  // namespace kvsim
