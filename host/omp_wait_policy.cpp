// prefer_passive_omp_waits: see include/vae/omp_wait_policy.hpp for why it re-executes the program.
#include "vae/omp_wait_policy.hpp"

#include <unistd.h>

#include <cstdlib>

namespace vae {

void prefer_passive_omp_waits(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;  // the user's choice, or already re-executed
  if (setenv("OMP_WAIT_POLICY", "passive", /*overwrite=*/0) != 0) return;
  execv("/proc/self/exe", argv);  // returns only when it failed: go on as we are
}

}  // namespace vae
