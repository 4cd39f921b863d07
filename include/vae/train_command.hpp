// `vae_cuda --train DIR`: picks the backend, loads the data, trains and reports each epoch.
#pragma once

#include <string>
#include <vector>

#include "vae/config.hpp"

namespace vae {

// Returns the process exit code; throws vae::Error on bad data or a failed run. explicit_model_flags
// are the model and optimiser flags given on the command line (checked against --resume's checkpoint).
int run_train(const TrainConfig& config, const std::vector<std::string>& explicit_model_flags = {});

}  // namespace vae
