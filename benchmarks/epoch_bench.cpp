// Whole-epoch figures of the real runtime (Trainer over CudaBackend, through epoch_timing), labelled
// as report rows so that PyTorch's epochs (pytorch_baseline.py, same labels) line up beside them.
#include <fmt/format.h>

#include "benches.hpp"
#include "epoch_timing.hpp"

namespace vae::bench {

void bench_epochs(Harness& h, const MnistData& data, int epochs) {
  for (int batch : {128, 1024})
    for (DataPlacement placement : {DataPlacement::kStreamed, DataPlacement::kResident})
      for (Precision precision : {Precision::kFp32, Precision::kTf32})
        for (bool graphs : {true, false}) {
          TrainConfig config;
          config.batch = batch;
          config.data = placement;
          config.precision = precision;
          config.cuda_graphs = graphs;
          const EpochTiming t = time_gpu_epochs(config, data, epochs);
          Measurement m{"epoch",
                        "train epoch",
                        fmt::format("batch {}, {}", batch, placement == DataPlacement::kResident ? "resident" : "streamed"),
                        graphs ? "ours" : "ours (plain launches)",
                        precision_name(precision),
                        t.median_seconds * 1e6,
                        {},
                        {},
                        {{"images_per_second", t.images_per_second}, {"test_loss", t.final_test_loss}}};
          fmt::print("{:<22} {:<28} {:<26} {:4}  {:10.2f} ms  {:9.0f} img/s\n", m.op, m.shape, m.impl, m.precision,
                     t.median_seconds * 1e3, t.images_per_second);
          h.results().push_back(std::move(m));
        }
}

}  // namespace vae::bench
