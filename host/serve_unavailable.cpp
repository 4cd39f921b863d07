// run_serve for portable builds (VAE_PORTABLE, the binaries carried to the GPU machine), which leave
// out cpp-httplib because that machine lacks its shared library.
#include "vae/error.hpp"
#include "vae/serve_command.hpp"

namespace vae {

void run_serve(const ServeOptions&) {
  throw Error("--serve: this build has no playground server (built with VAE_PORTABLE); use a regular build");
}

}  // namespace vae
