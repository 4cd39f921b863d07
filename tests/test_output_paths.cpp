// Where the commands write: every command that writes creates the folders its --out needs, a path
// it cannot use is named as the user gave it, and a write that fails (a file-size limit, a full
// disk) names the destination, never the temporary file, and leaves the previous file as it was.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "test_support.hpp"

namespace vae {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;
using testing::Not;
using testing_support::run_process;
using testing_support::TempDir;

testing_support::ProcessResult cli(const std::string& args) { return run_process(VAE_CLI_PATH, args); }

std::string bytes_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int lines_of(const std::string& text) { return static_cast<int>(std::count(text.begin(), text.end(), '\n')); }

// Tiny data and one epoch of a latent-2 model (so --latent-map works), trained once for the suite.
class OutputPaths : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    testing_support::write_tiny_mnist(data(), 40, 10);
    const auto r = cli(train_args() + " --epochs 1 --out " + model().string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }

  static fs::path data() { return dir_->path(); }
  static fs::path model() { return dir_->path() / "model"; }
  static fs::path checkpoint() { return model() / "checkpoint.safetensors"; }
  static std::string train_args() {
    return "--train " + data().string() + " --device cpu --no-progress --batch 16 --hidden 24 --latent 2";
  }
  // A fresh folder for one test, beside the suite's data.
  fs::path scratch(const std::string& name) {
    const fs::path p = dir_->path() / name;
    fs::remove_all(p);
    fs::create_directories(p);
    return p;
  }

  static TempDir* dir_;
};
TempDir* OutputPaths::dir_ = nullptr;

TEST_F(OutputPaths, TrainingCreatesMissingOutFolders) {
  const fs::path out = scratch("train") / "a" / "b" / "c";
  const auto r = cli(train_args() + " --epochs 1 --out " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(out / "metrics.csv"));
  EXPECT_TRUE(fs::exists(out / "checkpoint.safetensors"));
  EXPECT_TRUE(fs::exists(out / "samples_epoch_001.png"));
}

TEST_F(OutputPaths, EveryImageCommandCreatesMissingFolders) {
  const fs::path base = scratch("images");
  const std::string ckpt = checkpoint().string();
  struct Case {
    std::string args;
    fs::path written;
  };
  const Case cases[] = {
      {"--sample " + ckpt + " --out " + (base / "s" / "t" / "grid.png").string(), base / "s" / "t" / "grid.png"},
      {"--sample " + ckpt + " --out " + (base / "folder" / "deep").string(), base / "folder" / "deep" / "samples.png"},
      {"--interpolate " + ckpt + " --pair 0,1 --data-dir " + data().string() + " --out " +
           (base / "i" / "j" / "walk.png").string(),
       base / "i" / "j" / "walk.png"},
      {"--latent-map " + ckpt + " --out " + (base / "m" / "n").string(), base / "m" / "n" / "latent_map.png"},
  };
  for (const Case& c : cases) {
    const auto r = cli(c.args);
    EXPECT_EQ(r.exit_code, 0) << c.args << "\n" << r.output;
    EXPECT_TRUE(fs::is_regular_file(c.written)) << c.args;
    EXPECT_THAT(r.output, HasSubstr("wrote " + c.written.string()));
  }
}

// A file where a folder must go: one line naming the user's path and the part in the way.
TEST_F(OutputPaths, AFileInTheWayIsNamedAsTheUserGaveIt) {
  const fs::path base = scratch("blocked");
  std::ofstream(base / "blocker") << "a file, not a folder";
  const std::string blocked = (base / "blocker").string();
  struct Case {
    std::string args, named;
  };
  const Case cases[] = {
      {train_args() + " --epochs 1 --out " + blocked + "/out", blocked + "/out: cannot create folder: "},
      {"--sample " + checkpoint().string() + " --out " + blocked + "/x.png",
       blocked + "/x.png: cannot create its folder " + blocked + ": "},
      {"--latent-map " + checkpoint().string() + " --out " + blocked + "/sub",
       blocked + "/sub/latent_map.png: cannot create its folder " + blocked + "/sub: "},
  };
  for (const Case& c : cases) {
    const auto r = cli(c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr("vae_cuda: error: " + c.named + blocked + " is a file, not a folder\n")) << c.args;
    EXPECT_THAT(r.output, Not(HasSubstr(".tmp"))) << c.args;
    EXPECT_EQ(lines_of(r.output.substr(r.output.find("vae_cuda: error: "))), 1) << r.output;
  }
  EXPECT_EQ(bytes_of(base / "blocker"), "a file, not a folder");
}

// A checkpoint that cannot be written whole (here a file-size limit, which needs no privilege) is
// reported under its own name, and the checkpoint already there is unchanged, with no temporary left.
TEST_F(OutputPaths, AFailedCheckpointWriteNamesTheCheckpointAndKeepsThePreviousOne) {
  const fs::path out = scratch("limited");
  fs::copy(model(), out, fs::copy_options::recursive);
  const std::string before = bytes_of(out / "checkpoint.safetensors");
  ASSERT_GT(before.size(), 200u * 1024);
  // SIGXFSZ ignored, so a write past the limit fails with EFBIG instead of killing the process.
  const auto r = run_process("/bin/bash", "-c \"trap '' XFSZ; ulimit -f 100; exec '" VAE_CLI_PATH "' " + train_args() +
                                              " --epochs 2 --resume " + (out / "checkpoint.safetensors").string() +
                                              " --out " + out.string() + "\"");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("vae_cuda: error: " + (out / "checkpoint.safetensors").string() +
                                  ": cannot write: File too large; the file there before is left as it was"));
  EXPECT_THAT(r.output, Not(HasSubstr(".tmp")));
  EXPECT_EQ(bytes_of(out / "checkpoint.safetensors"), before);
  EXPECT_FALSE(fs::exists(out / "checkpoint.safetensors.tmp"));
}

// A real full disk: a 2 MiB tmpfs, mounted in a private user and mount namespace (no root needed
// where the kernel allows user namespaces), holding a checkpoint and filled to 256 KiB of space,
// enough for metrics.csv and the epoch's images but not for the new checkpoint. Skipped where
// such a mount is not allowed.
TEST_F(OutputPaths, AFullDiskNamesTheDestinationAndKeepsThePreviousFile) {
  const fs::path base = scratch("full");
  const fs::path mnt = base / "mnt", after = base / "after";
  fs::create_directories(mnt);
  fs::create_directories(after);
  const auto probe = run_process("unshare", "-rm sh -c 'mount -t tmpfs -o size=64k tmpfs " + mnt.string() + "'");
  if (probe.exit_code != 0) GTEST_SKIP() << "cannot mount a tmpfs in a user namespace here: " << probe.output;
  std::ofstream(base / "fill.sh")
      << "set -u\n"
         "mount -t tmpfs -o size=2m tmpfs \"$MNT\" || exit 90\n"
         "cp \"$MODEL/checkpoint.safetensors\" \"$MODEL/metrics.csv\" \"$MNT/\" || exit 91\n"
         "cat /dev/zero > \"$MNT/fill\" 2>/dev/null\n"
         "truncate -s -256K \"$MNT/fill\" || exit 92\n"
         "\"$CLI\" $ARGS --epochs 2 --resume \"$MNT/checkpoint.safetensors\" --out \"$MNT\" 2>&1\n"
         "echo \"exit code $?\"\n"
         "rm \"$MNT/fill\"\n"
         "cp -a \"$MNT/.\" \"$AFTER/\"\n";
  const auto r = run_process("/usr/bin/env", "MNT='" + mnt.string() + "' MODEL='" + model().string() + "' AFTER='" +
                                                 after.string() + "' CLI='" VAE_CLI_PATH "' ARGS='" + train_args() +
                                                 "' unshare -rm bash " + (base / "fill.sh").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("vae_cuda: error: " + (mnt / "checkpoint.safetensors").string() +
                                  ": cannot write: No space left on device; the file there before is left as it was\n"
                                  "exit code 1"));
  EXPECT_THAT(r.output, Not(HasSubstr(".tmp")));
  EXPECT_EQ(bytes_of(after / "checkpoint.safetensors"), bytes_of(checkpoint()));
  EXPECT_FALSE(fs::exists(after / "checkpoint.safetensors.tmp"));
  EXPECT_TRUE(fs::exists(after / "samples_epoch_002.png"));  // the writes that fit went through
}

}  // namespace
}  // namespace vae
