// The command-line tests' shared pieces: parsing an argument list as vae_cuda would, and comparing
// two runs' settings field by field, so that a failure names the field that differs.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vae/cli.hpp"

namespace vae::testing_support {

// args without the program name.
inline CommandLine parse(std::vector<std::string> args) {
  args.insert(args.begin(), "vae_cuda");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

// Every field of TrainConfig.
inline void expect_same_train_config(const TrainConfig& x, const TrainConfig& y) {
  EXPECT_EQ(x.model, y.model);  // input, hidden, latent, beta and every model option
  EXPECT_EQ(x.data_dir, y.data_dir);
  EXPECT_EQ(x.out_dir, y.out_dir);
  EXPECT_EQ(x.epochs, y.epochs);
  EXPECT_EQ(x.batch, y.batch);
  EXPECT_EQ(x.adam.lr, y.adam.lr);  // bit for bit: the same text becomes the same double
  EXPECT_EQ(x.adam.beta1, y.adam.beta1);
  EXPECT_EQ(x.adam.beta2, y.adam.beta2);
  EXPECT_EQ(x.adam.eps, y.adam.eps);
  EXPECT_EQ(x.adam.weight_decay, y.adam.weight_decay);
  EXPECT_EQ(x.adam.decoupled, y.adam.decoupled);
  EXPECT_EQ(x.lr_schedule, y.lr_schedule);
  EXPECT_EQ(x.plateau.factor, y.plateau.factor);
  EXPECT_EQ(x.plateau.patience, y.plateau.patience);
  EXPECT_EQ(x.plateau.threshold, y.plateau.threshold);
  EXPECT_EQ(x.plateau.cooldown, y.plateau.cooldown);
  EXPECT_EQ(x.plateau.min_lr, y.plateau.min_lr);
  EXPECT_EQ(x.plateau.eps, y.plateau.eps);
  EXPECT_EQ(x.seed, y.seed);
  EXPECT_EQ(x.device, y.device);
  EXPECT_EQ(x.precision, y.precision);
  EXPECT_EQ(x.data, y.data);
  EXPECT_EQ(x.cuda_graphs, y.cuda_graphs);
  EXPECT_EQ(x.progress, y.progress);
  EXPECT_EQ(x.checkpoint_every, y.checkpoint_every);
  EXPECT_EQ(x.resume_from, y.resume_from);
  EXPECT_EQ(x.allow_data_change, y.allow_data_change);
}

}  // namespace vae::testing_support
