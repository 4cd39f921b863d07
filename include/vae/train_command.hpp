// `vae_cuda --train DIR`: picks the backend, loads the data, trains and reports each epoch.
#pragma once

#include "vae/config.hpp"

namespace vae {

// Returns the process exit code; throws vae::Error on bad data or a failed run.
int run_train(const TrainConfig& config);

}  // namespace vae
