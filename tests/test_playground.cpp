// The playground's handlers on checkpoints written here (a Bernoulli model, and a Gaussian one with
// BatchNorm whose running statistics are far from their initial values): each endpoint's answer is
// what the reference encode and decode give for the same input, and every malformed request is a
// 400 whose one line names the field.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "metrics_file.hpp"
#include "playground.hpp"
#include "model_support.hpp"
#include "test_support.hpp"
#include "vae/checkpoint.hpp"
#include "vae/error.hpp"
#include "vae/images.hpp"
#include "vae/latent_interpolation.hpp"
#include "vae/layout.hpp"
#include "vae/mnist_style.hpp"
#include "vae/reference_model.hpp"

namespace vae {
namespace {

using nlohmann::json;
using testing_support::TempDir;

ModelConfig bernoulli_model() {
  ModelConfig m;
  m.hidden = {32};
  m.latent = 2;
  return m;
}

Checkpoint make_checkpoint(const ModelConfig& model, uint64_t seed) {
  Checkpoint c;
  c.config.model = model;
  c.data = DataIdentity{28, 28, 1000, 1, 2};
  c.state.params = testing_support::initial_params(model, seed);
  c.state.adam_m.assign(c.state.params.size(), 0.0f);
  c.state.adam_v.assign(c.state.params.size(), 0.0f);
  c.state.running_stats = testing_support::odd_running_stats(model, static_cast<uint32_t>(seed));
  return c;
}

std::vector<float> random_image(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> x(784);
  for (float& v : x) v = unit(rng);
  return x;
}

class PlaygroundTest : public testing::Test {
 protected:
  void SetUp() override {
    Checkpoint first = make_checkpoint(bernoulli_model(), 11);
    first.position = DataPosition{1, 0};
    Checkpoint second = make_checkpoint(testing_support::small_seed_model(3), 12);
    second.position = DataPosition{4, 7};
    second.config.lr_schedule = LrSchedule::kPlateau;
    second.plateau = PlateauState{};
    second.plateau->best = 123.25;
    second.plateau->lr = 1e-3;
    files_ = {dir_.path() / "bernoulli.safetensors", dir_.path() / "gaussian_bn.safetensors"};
    write_checkpoint(files_[0], first);
    write_checkpoint(files_[1], second);
    playground_ = std::make_unique<Playground>(files_);
    checkpoints_ = {read_checkpoint(files_[0]), read_checkpoint(files_[1])};
  }

  json ok(const std::string& endpoint, const json& request) {
    const PlaygroundResponse r = playground_->handle(endpoint, request);
    EXPECT_EQ(r.status, 200) << r.body.dump();
    return r.body;
  }

  // The reference's answers, straight from the checkpoint file.
  std::vector<float> reference_decode(int id, int count, const std::vector<float>& z) {
    const Checkpoint& c = checkpoints_[id];
    ReferenceVae<float> vae(c.config.model, count);
    return decode_images(vae, count, z.data(), c.state.params, c.state.running_stats);
  }
  std::vector<float> reference_posteriors(int id, int count, const std::vector<float>& x) {
    const Checkpoint& c = checkpoints_[id];
    ReferenceVae<float> vae(c.config.model, count);
    return encode_posteriors(vae, count, x.data(), c.state.params, c.state.running_stats);
  }

  TempDir dir_;
  std::vector<std::filesystem::path> files_;
  std::unique_ptr<Playground> playground_;
  std::vector<Checkpoint> checkpoints_;
};

std::vector<float> flat(const json& rows) {
  std::vector<float> out;
  for (const json& row : rows)
    for (const json& v : row) out.push_back(v.get<float>());
  return out;
}

TEST_F(PlaygroundTest, ModelsListsEachCheckpointByIdAndFileName) {
  const json models = ok("models", json::object())["models"];
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(models[0]["id"], 0);
  EXPECT_EQ(models[0]["file"], "bernoulli.safetensors");
  EXPECT_EQ(models[0]["latent"], 2);
  EXPECT_EQ(models[0]["likelihood"], "bernoulli");
  EXPECT_EQ(models[0]["batch_norm"], false);
  EXPECT_EQ(models[0]["epochs_trained"], 0);
  EXPECT_TRUE(models[0]["best_test_loss"].is_null());
  EXPECT_EQ(models[0]["architecture"], "784-32-2, ReLU, Bernoulli, beta 1");
  EXPECT_EQ(models[1]["id"], 1);
  EXPECT_EQ(models[1]["file"], "gaussian_bn.safetensors");
  EXPECT_EQ(models[1]["latent"], 3);
  EXPECT_EQ(models[1]["likelihood"], "gaussian");
  EXPECT_EQ(models[1]["alpha"], 32.0);
  EXPECT_EQ(models[1]["batch_norm"], true);
  EXPECT_EQ(models[1]["hidden"], json({24, 12}));
  EXPECT_EQ(models[1]["epochs_trained"], 3);
  EXPECT_EQ(models[1]["batches_into_epoch"], 7);
  EXPECT_EQ(models[1]["best_test_loss"], 123.25);
  EXPECT_EQ(models[1]["architecture"], "784-24-12-5-3, BatchNorm1d, LeakyReLU(0.1), Gaussian (alpha 32), beta 1");
}

TEST_F(PlaygroundTest, DecodeEqualsTheReferenceDecodeOfTheSameLatent) {
  for (int id : {0, 1}) {
    const std::vector<float> z = id == 0 ? std::vector<float>{0.3f, -1.2f} : std::vector<float>{0.3f, -1.2f, 2.0f};
    const json body = ok("decode", {{"model", id}, {"z", z}});
    EXPECT_EQ(body["pixels"].get<std::vector<float>>(), reference_decode(id, 1, z)) << id;
  }
  // The running statistics matter: the BatchNorm model's decode differs from one with the initial ones.
  Checkpoint initial = checkpoints_[1];
  init_running_stats(make_layout(initial.config.model), initial.state.running_stats.data());
  ReferenceVae<float> vae(initial.config.model, 1);
  const std::vector<float> z = {0.3f, -1.2f, 2.0f};
  EXPECT_NE(ok("decode", {{"model", 1}, {"z", z}})["pixels"].get<std::vector<float>>(),
            decode_images(vae, 1, z.data(), initial.state.params, initial.state.running_stats));
}

TEST_F(PlaygroundTest, EncodeAndReconstructEqualTheReference) {
  const std::vector<float> x = random_image(5);
  for (int id : {0, 1}) {
    const int latent = checkpoints_[id].config.model.latent;
    const std::vector<float> posterior = reference_posteriors(id, 1, x);
    const std::vector<float> mu(posterior.begin(), posterior.begin() + latent);
    const std::vector<float> logvar(posterior.begin() + latent, posterior.end());
    const json encoded = ok("encode", {{"model", id}, {"pixels", x}});
    EXPECT_EQ(encoded["mu"].get<std::vector<float>>(), mu);
    EXPECT_EQ(encoded["logvar"].get<std::vector<float>>(), logvar);
    const json rebuilt = ok("reconstruct", {{"model", id}, {"pixels", x}});
    ReferenceVae<float> vae(checkpoints_[id].config.model, 1);
    EXPECT_EQ(rebuilt["mu"].get<std::vector<float>>(),
              encode_means(vae, 1, x.data(), checkpoints_[id].state.params, checkpoints_[id].state.running_stats));
    EXPECT_EQ(rebuilt["pixels"].get<std::vector<float>>(), reference_decode(id, 1, mu));
    EXPECT_EQ(rebuilt["input"].get<std::vector<float>>(), x);
  }
}

TEST_F(PlaygroundTest, ACanvasIsPreparedMnistStyle) {
  const int w = 60, h = 40;
  std::vector<float> drawing(w * h, 0.0f);
  for (int i = 0; i < 30; ++i) drawing[(5 + i) * w + 10 + i / 2] = 1.0f;
  const json canvas = {{"width", w}, {"height", h}, {"pixels", drawing}};
  const json body = ok("reconstruct", {{"model", 1}, {"canvas", canvas}});
  const std::vector<float> x = mnist_style_input(w, h, drawing);
  EXPECT_EQ(body["input"].get<std::vector<float>>(), x);
  EXPECT_EQ(body["mu"], ok("encode", {{"model", 1}, {"pixels", x}})["mu"]);
}

TEST_F(PlaygroundTest, LinearInterpolationRunsBetweenTheImagesMeans) {
  const std::vector<float> a = random_image(1), b = random_image(2);
  std::vector<float> pair = a;
  pair.insert(pair.end(), b.begin(), b.end());
  const std::vector<float> posteriors = reference_posteriors(1, 2, pair);
  const std::vector<float> mu_a(posteriors.begin(), posteriors.begin() + 3), mu_b(posteriors.begin() + 6, posteriors.begin() + 9);
  const json body = ok("interpolate", {{"model", 1}, {"images", {a, b}}, {"frames", 5}});
  const std::vector<float> z = flat(body["latents"]);
  ASSERT_EQ(z.size(), 15u);
  EXPECT_EQ(std::vector<float>(z.begin(), z.begin() + 3), mu_a);
  EXPECT_EQ(std::vector<float>(z.end() - 3, z.end()), mu_b);
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(z[2 * 3 + k], (mu_a[k] + mu_b[k]) / 2, 1e-6f);  // t = 1/2
  EXPECT_EQ(flat(body["frames"]), reference_decode(1, 5, z));
}

TEST_F(PlaygroundTest, SphericalInterpolationKeepsTheDocumentedNormAndAngle) {
  const std::vector<float> a = {3.0f, 0.0f, 0.0f}, b = {0.0f, 0.0f, 1.0f};  // 90 degrees apart, norms 3 and 1
  const json body = ok("interpolate", {{"model", 1}, {"latents", {a, b}}, {"frames", 3}, {"mode", "spherical"}});
  const std::vector<float> z = flat(body["latents"]);
  ASSERT_EQ(z.size(), 9u);
  EXPECT_EQ(std::vector<float>(z.begin(), z.begin() + 3), a);
  EXPECT_EQ(std::vector<float>(z.begin() + 6, z.end()), b);
  // The midpoint: norm (3 + 1) / 2 = 2, direction halfway along the arc, (1, 0, 1) / sqrt 2.
  EXPECT_NEAR(z[3], std::sqrt(2.0f), 1e-6f);
  EXPECT_NEAR(z[4], 0.0f, 1e-6f);
  EXPECT_NEAR(z[5], std::sqrt(2.0f), 1e-6f);
  EXPECT_EQ(flat(body["frames"]), reference_decode(1, 3, z));
}

TEST(LatentInterpolation, ParallelOrZeroEndsFallBackToTheLine) {
  for (const auto& [a, b] : {std::pair{std::vector<float>{1, 2}, std::vector<float>{2, 4}},
                             std::pair{std::vector<float>{0, 0}, std::vector<float>{2, 4}}}) {
    EXPECT_EQ(interpolate_latents(a, b, 4, LatentPath::kSpherical), interpolate_latents(a, b, 4, LatentPath::kLinear));
  }
  EXPECT_THROW(interpolate_latents({1}, {1, 2}, 3, LatentPath::kLinear), Error);
  EXPECT_THROW(interpolate_latents({1}, {2}, 1, LatentPath::kLinear), Error);
}

TEST_F(PlaygroundTest, SampleDecodesTheSeedsPriorDraws) {
  const json body = ok("sample", {{"model", 1}, {"count", 4}, {"seed", 99}});
  const std::vector<float> z = sample_latents(99, 4, 3);
  EXPECT_EQ(flat(body["latents"]), z);
  EXPECT_EQ(flat(body["images"]), reference_decode(1, 4, z));
  EXPECT_NE(flat(ok("sample", {{"model", 1}, {"count", 4}, {"seed", 100}})["latents"]), z);
  const uint64_t large = (uint64_t{1} << 63) + 5;  // a seed past int64 is still a seed
  EXPECT_EQ(flat(ok("sample", {{"model", 0}, {"count", 1}, {"seed", large}})["latents"]), sample_latents(large, 1, 2));
}

// Each malformed request: a 400 whose single-line message starts with the field at fault.
TEST_F(PlaygroundTest, MalformedRequestsAre400sNamingTheField) {
  const std::vector<float> x = random_image(3);
  std::vector<float> short_x(x.begin(), x.end() - 1), bright = x;
  bright[10] = 1.5f;
  json with_string = x;
  with_string[4] = "0.5";
  json with_nan = x;
  with_nan[7] = std::nan("");
  const json good_canvas = {{"width", 2}, {"height", 2}, {"pixels", {0, 1, 0, 0}}};
  struct Case {
    std::string endpoint;
    json request;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"decode", json::array(), "request"},
      {"decode", "text", "request"},
      {"decode", {{"z", {0, 0}}}, "model"},
      {"decode", {{"model", 2}, {"z", {0, 0}}}, "model"},
      {"decode", {{"model", -1}, {"z", {0, 0}}}, "model"},
      {"decode", {{"model", "0"}, {"z", {0, 0}}}, "model"},
      {"decode", {{"model", 0.5}, {"z", {0, 0}}}, "model"},
      {"decode", {{"model", true}, {"z", {0, 0}}}, "model"},
      {"decode", {{"model", 0}}, "z, latents"},
      {"decode", {{"model", 0}, {"z", {0, 0}}, {"latents", {{0, 0}}}}, "z, latents"},
      {"decode", {{"model", 0}, {"latents", json::array()}}, "latents"},
      {"decode", {{"model", 0}, {"latents", {0, 0}}}, "latents[0]"},
      {"decode", {{"model", 0}, {"latents", {{0, 0}, {0, 0}, {0}}}}, "latents[2]"},
      {"decode", {{"model", 0}, {"latents", json(std::vector<std::vector<float>>(kMaxDecodeBatch + 1, {0, 0}))}}, "latents"},
      {"decode", {{"model", 0}, {"latents", "many"}}, "latents"},
      {"test_image", {{"index", 0}}, "index"},
      {"decode", {{"model", 0}, {"z", {0, 0, 0}}}, "z"},
      {"decode", {{"model", 0}, {"z", 1.0}}, "z"},
      {"decode", {{"model", 0}, {"z", {0, nullptr}}}, "z[1]"},
      {"decode", {{"model", 0}, {"z", {0, std::numeric_limits<double>::infinity()}}}, "z[1]"},
      {"decode", {{"model", 0}, {"z", {1e300, 0}}}, "z[0]"},
      {"encode", {{"model", 0}}, "pixels, canvas"},
      {"encode", {{"model", 0}, {"pixels", x}, {"canvas", good_canvas}}, "pixels, canvas"},
      {"encode", {{"model", 0}, {"pixels", short_x}}, "pixels"},
      {"encode", {{"model", 0}, {"pixels", bright}}, "pixels[10]"},
      {"encode", {{"model", 0}, {"pixels", with_string}}, "pixels[4]"},
      {"encode", {{"model", 0}, {"pixels", with_nan}}, "pixels[7]"},
      {"reconstruct", {{"model", 0}, {"pixels", short_x}}, "pixels"},
      {"reconstruct", {{"model", 0}, {"canvas", "x"}}, "canvas"},
      {"reconstruct", {{"model", 0}, {"canvas", {{"width", 2}, {"pixels", {0, 1, 0, 0}}}}}, "canvas.height"},
      {"reconstruct", {{"model", 0}, {"canvas", {{"width", 0}, {"height", 2}, {"pixels", json::array()}}}}, "canvas.width"},
      {"reconstruct", {{"model", 0}, {"canvas", {{"width", 5000}, {"height", 1}, {"pixels", json::array()}}}}, "canvas.width"},
      {"reconstruct", {{"model", 0}, {"canvas", {{"width", 2}, {"height", 2}, {"pixels", {0, 1, 0}}}}}, "canvas.pixels"},
      {"reconstruct", {{"model", 0}, {"canvas", {{"width", 2}, {"height", 2}, {"pixels", {0, 1, 0, -1}}}}}, "canvas.pixels[3]"},
      {"interpolate", {{"model", 0}, {"images", {x, x}}}, "frames"},
      {"interpolate", {{"model", 0}, {"images", {x, x}}, {"frames", 1}}, "frames"},
      {"interpolate", {{"model", 0}, {"images", {x, x}}, {"frames", 65}}, "frames"},
      {"interpolate", {{"model", 0}, {"images", {x, x}}, {"frames", 4}, {"mode", "cubic"}}, "mode"},
      {"interpolate", {{"model", 0}, {"images", {x, x}}, {"frames", 4}, {"mode", 1}}, "mode"},
      {"interpolate", {{"model", 0}, {"frames", 4}}, "images, latents"},
      {"interpolate", {{"model", 0}, {"images", {x, x}}, {"latents", {{0, 0}, {0, 0}}}, {"frames", 4}}, "images, latents"},
      {"interpolate", {{"model", 0}, {"images", {x}}, {"frames", 4}}, "images"},
      {"interpolate", {{"model", 0}, {"images", {x, short_x}}, {"frames", 4}}, "images[1]"},
      {"interpolate", {{"model", 0}, {"images", {good_canvas, {{"width", 2}}}}, {"frames", 4}}, "images[1].height"},
      {"interpolate", {{"model", 0}, {"latents", {{0, 0}, {0}}}, {"frames", 4}}, "latents[1]"},
      {"sample", {{"model", 0}, {"seed", 1}}, "count"},
      {"sample", {{"model", 0}, {"count", 0}, {"seed", 1}}, "count"},
      {"sample", {{"model", 0}, {"count", 65}, {"seed", 1}}, "count"},
      {"sample", {{"model", 0}, {"count", 2}}, "seed"},
      {"sample", {{"model", 0}, {"count", 2}, {"seed", -1}}, "seed"},
      {"sample", {{"model", 0}, {"count", 2}, {"seed", 1.5}}, "seed"},
      {"sample", {{"model", 0}, {"count", 2}, {"seed", "1"}}, "seed"},
  };
  for (const Case& c : cases) {
    const PlaygroundResponse r = playground_->handle(c.endpoint, c.request);
    const std::string what = c.endpoint + " " + c.request.dump().substr(0, 120);
    EXPECT_EQ(r.status, 400) << what;
    ASSERT_TRUE(r.body.contains("error")) << what;
    const std::string message = r.body["error"].get<std::string>();
    EXPECT_EQ(message.rfind(c.field + ":", 0), 0u) << what << " -> " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  EXPECT_EQ(playground_->handle("weights", json::object()).status, 404);
}

TEST_F(PlaygroundTest, ConcurrentRequestsGiveTheSameAnswersAsOneAtATime) {
  std::vector<json> requests;
  for (int i = 0; i < 8; ++i) requests.push_back({{"model", i % 2}, {"pixels", random_image(static_cast<uint32_t>(20 + i))}});
  std::vector<json> alone;
  for (const json& r : requests) alone.push_back(ok("reconstruct", r));
  std::vector<std::vector<PlaygroundResponse>> together(requests.size());
  std::vector<std::thread> threads;
  for (size_t t = 0; t < requests.size(); ++t)
    threads.emplace_back([&, t] {
      for (int repeat = 0; repeat < 5; ++repeat) together[t].push_back(playground_->handle("reconstruct", requests[t]));
    });
  for (std::thread& t : threads) t.join();
  for (size_t t = 0; t < requests.size(); ++t)
    for (const PlaygroundResponse& r : together[t]) {
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(r.body, alone[t]) << t;
    }
}

TEST_F(PlaygroundTest, ABatchOfLatentsDecodesAsEachOneAlone) {
  // 70 latents: more than a batch decode's 64 rows, so the chunks' seam is crossed.
  const int count = 70;
  for (int id : {0, 1}) {
    const int latent = checkpoints_[id].config.model.latent;
    const std::vector<float> z = sample_latents(9, count, latent);
    json latents = json::array();
    for (int i = 0; i < count; ++i) latents.push_back(std::vector<float>(z.begin() + i * latent, z.begin() + (i + 1) * latent));
    const json images = ok("decode", {{"model", id}, {"latents", latents}})["images"];
    ASSERT_EQ(images.size(), static_cast<size_t>(count));
    EXPECT_EQ(flat(images), reference_decode(id, count, z)) << id;
    EXPECT_EQ(images[count - 1], ok("decode", {{"model", id}, {"z", latents[count - 1]}})["pixels"]) << id;
  }
}

TEST_F(PlaygroundTest, TestImagesAreServedByIndexScaledToOne) {
  EXPECT_EQ(ok("models", json::object())["test_images"], json({{"count", 0}, {"rows", 0}, {"cols", 0}}));
  const MnistSplit split = testing_support::random_split(5, 3);
  const Playground with_images(playground_->models(), split);
  const json listed = with_images.handle("models", json::object()).body["test_images"];
  EXPECT_EQ(listed, json({{"count", 5}, {"rows", 28}, {"cols", 28}}));
  const PlaygroundResponse r = with_images.handle("test_image", {{"index", 4}});
  ASSERT_EQ(r.status, 200) << r.body.dump();
  EXPECT_EQ(r.body["index"], 4);
  EXPECT_EQ(r.body["label"], 0);
  std::vector<float> expected(784);
  for (int i = 0; i < 784; ++i) expected[i] = split.pixels[4 * 784 + i] / 255.0f;
  EXPECT_EQ(r.body["pixels"].get<std::vector<float>>(), expected);
  for (const json& bad : {json({{"index", 5}}), json({{"index", -1}}), json({{"index", "1"}}), json::object()}) {
    const PlaygroundResponse refused = with_images.handle("test_image", bad);
    EXPECT_EQ(refused.status, 400) << bad.dump();
    EXPECT_EQ(refused.body["error"].get<std::string>().rfind("index:", 0), 0u) << refused.body.dump();
  }
  // The image, sent back, is an input the models take.
  EXPECT_EQ(with_images.handle("encode", {{"model", 0}, {"pixels", r.body["pixels"]}}).status, 200);
}

TEST_F(PlaygroundTest, TestImagesComeFromTheDataFoldersTestSplit) {
  testing_support::write_tiny_mnist(dir_.path() / "data", 3, 4, 28, 28, 7);
  const Playground with_images(files_, dir_.path() / "data");
  const MnistSplit test = load_mnist_dir(dir_.path() / "data").test;
  ASSERT_EQ(with_images.test_images().count, 4);
  const json image = with_images.handle("test_image", {{"index", 2}}).body;
  EXPECT_EQ(image["label"], test.labels[2]);
  EXPECT_EQ(image["pixels"][100], test.pixels[2 * 784 + 100] / 255.0f);
  try {
    Playground missing(files_, dir_.path() / "no-data");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no-data"), std::string::npos) << e.what();
  }
}

TEST_F(PlaygroundTest, TheTestLossComesFromTheRunsMetricsBesideTheCheckpoint) {
  // The Gaussian checkpoint has finished 3 epochs: its row is epoch 3, not the last row.
  const auto write_metrics = [&](const std::string& text) {
    std::ofstream(dir_.path() / "metrics.csv") << text;
    return Playground(files_).handle("models", json::object()).body["models"];
  };
  const std::string rows = "1,10,300,280,20,290.5,1000,1,0.001\n2,20,200,180,20,190.25,1000,1,0.001\n"
                           "3,30,150,130,20,140.125,1000,1,0.001\n4,40,140,120,20,139,1000,1,0.001\n";
  json models = write_metrics(std::string(MetricsFile::kHeader) + "\n" + rows);
  EXPECT_EQ(models[1]["test_loss"], 140.125);
  EXPECT_TRUE(models[0]["test_loss"].is_null()) << "no epoch finished";
  // An older run's file, before the lr column, is read too.
  models = write_metrics("epoch,step,train_loss,reconstruction,kl,test_loss,images_per_s,seconds\n3,30,1,1,1,77.5,1,1\n");
  EXPECT_EQ(models[1]["test_loss"], 77.5);
  // Anything else is no test loss, never an error: another file, a damaged value, no row for the epoch.
  for (const std::string& text : {std::string("a,b,c\n3,4,5\n"), std::string(MetricsFile::kHeader) + "\n3,30,1,1,1,7x,1,1,1\n",
                                  std::string(MetricsFile::kHeader) + "\n3,30,1,1,1,nan,1,1,1\n",
                                  std::string(MetricsFile::kHeader) + "\n1,10,1,1,1,5,1,1,1\n", std::string()})
    EXPECT_TRUE(write_metrics(text)[1]["test_loss"].is_null()) << text;
  std::filesystem::remove(dir_.path() / "metrics.csv");
  EXPECT_TRUE(Playground(files_).handle("models", json::object()).body["models"][1]["test_loss"].is_null());
}

TEST(Playground, ACanvasIsRefusedByAModelOfOtherImages) {
  TempDir dir;
  ModelConfig small = bernoulli_model();
  small.input = 16 * 16;
  Checkpoint square = make_checkpoint(small, 3);
  square.data = DataIdentity{16, 16, 100, 1, 2};
  write_checkpoint(dir.path() / "square.safetensors", square);
  std::vector<PlaygroundModel> models = Playground({dir.path() / "square.safetensors"}).models();
  models.push_back(models[0]);
  models[1].rows = models[1].cols = 0;  // as a version-1 checkpoint, which records no shape
  const Playground playground(models);
  const json canvas = {{"width", 2}, {"height", 2}, {"pixels", {0, 1, 0, 0}}};
  const PlaygroundResponse a = playground.handle("encode", {{"model", 0}, {"canvas", canvas}});
  EXPECT_EQ(a.status, 400);
  EXPECT_EQ(a.body["error"], "canvas: the model takes 16x16 images, a canvas becomes 28x28");
  const PlaygroundResponse b = playground.handle("interpolate", {{"model", 1}, {"images", {canvas, canvas}}, {"frames", 2}});
  EXPECT_EQ(b.status, 400);
  EXPECT_EQ(b.body["error"], "images[0]: the model takes images of 256 values, a canvas becomes 28x28");
  // Its own pixels are fine.
  EXPECT_EQ(playground.handle("encode", {{"model", 0}, {"pixels", std::vector<float>(256, 0.5f)}}).status, 200);
}

TEST(Playground, AMissingCheckpointIsAnErrorNamingIt) {
  TempDir dir;
  try {
    Playground playground(std::vector<std::filesystem::path>{dir.path() / "absent.safetensors"});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("absent.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vae
