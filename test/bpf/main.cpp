// The bpf tier's main: runs the tests in a child process that lives in its own network and mount
// namespaces (see env.h), so nothing reaches the machine's root namespaces:
//   - the veth pairs, addresses, routes, neighbours and ip_forward exist only in the child's
//     network namespace, which the kernel destroys when the child exits, however it exits;
//   - the bpffs (and the maps pinned in it) is mounted only in the child's private mount
//     namespace, and is gone with it; /sys/fs/bpf is never touched;
//   - the one thing on the shared file system, the empty mount-point directory under /tmp, is
//     created and removed by the parent, which survives a crash of the child. The child dies with
//     the parent (PR_SET_PDEATHSIG), so an interrupted run leaves at most that empty directory.
// `--gtest_list_tests` (CTest's test discovery at build time) only lists: no root, no namespaces.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "env.h"

namespace {

bool listingOnly(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--gtest_list_tests") == 0) return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const bool listing = listingOnly(argc, argv);  // before InitGoogleTest() consumes the flag
  ::testing::InitGoogleTest(&argc, argv);
  if (listing) return RUN_ALL_TESTS();

  if (::geteuid() != 0) {
    std::fprintf(stderr, "the bpf test tier needs root (BPF_PROG_TEST_RUN, namespaces, bpffs)\n");
    return 1;
  }
  char dir[] = "/tmp/np-bpftest-XXXXXX";
  if (!::mkdtemp(dir)) {
    std::perror("mkdtemp /tmp/np-bpftest-XXXXXX");
    return 1;
  }
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  pid_t child = ::fork();
  if (child < 0) {
    std::perror("fork");
    ::rmdir(dir);
    return 1;
  }
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(1);  // the parent is already gone
    if (!np::bpftest::setUpEnv(dir)) _exit(1);
    std::exit(RUN_ALL_TESTS());
  }

  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (::rmdir(dir) != 0) std::fprintf(stderr, "rmdir %s: %s\n", dir, std::strerror(errno));
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  std::fprintf(stderr, "bpf tests killed by signal %d\n", WTERMSIG(status));
  return 128 + WTERMSIG(status);
}
