#!/usr/bin/env python3
"""Shows that the emulation suite is not vacuous: plants known defects in a copy of kernels/, builds
the emulation tests against each mutated copy and expects every one to be caught.

Each defect is a bug a real kernel could have (a swapped mma fragment, a missing barrier, a ReLU that
drops NaN, a wrong index, an out-of-bounds read). The unmutated copy must pass the same tests first,
so a catch means the defect was seen, not that the build or the test was broken.

    python3 tests/emulation/planted_defects.py [--build-dir build-planted] [--only NAME ...]

Exit status 0 when every defect is caught; 1 when one escapes or cannot be planted.
"""
import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Defect:
    name: str
    file: str  # under kernels/
    old: str  # must occur exactly once
    new: str
    target: str  # the emulation test binary that must catch it
    tests: str  # its gtest filter


DEFECTS = [
    # The tile GEMM both fused launches are built from (gemm_tile.cuh).
    Defect("mma-fragment-swap", "gemm_tile.cuh",
           "af[mt][1] = __float_as_uint(s.a[kk + member][row + 8]);",
           "af[mt][1] = __float_as_uint(s.a[kk + member + 4][row]);",
           "test_emu_linear", "*LinearKernels.MatchReference*/tf32"),
    Defect("missing-barrier", "gemm_tile.cuh",
           "          for (int j = 0; j < T::TN; ++j) out.acc[i][j][0] = fmaf(af[i], bf[j], out.acc[i][j][0]);\n"
           "      }\n    }\n    __syncthreads();",
           "          for (int j = 0; j < T::TN; ++j) out.acc[i][j][0] = fmaf(af[i], bf[j], out.acc[i][j][0]);\n"
           "      }\n    }",
           "test_emu_linear", "*LinearKernels.MatchReference*"),
    Defect("split-k-counter-kept", "gemm_tile.cuh",
           "    if (last) *counter = 0;\n",
           "",
           "test_emu_linear", "*LinearKernels.SplitK*"),
    Defect("split-k-drops-a-split", "gemm_tile.cuh",
           "for (int s = 0; s < splits; ++s) total +=",
           "for (int s = 0; s + 1 < splits; ++s) total +=",
           "test_emu_linear", "*LinearKernels.MatchReference*/fp32"),
    # The forward launch and its epilogues (linear_forward.cu).
    Defect("relu-drops-nan", "linear_forward.cu",
           "if (p.activation == Activation::kReLU) return relu(value);",
           "if (p.activation == Activation::kReLU) return value > 0.0f ? value : 0.0f;",
           "test_emu_linear", "*NaN*"),
    Defect("advance-keys-previous-step", "linear_forward.cu",
           "*a.noise_stream = train_stream(static_cast<uint64_t>(next));",
           "*a.noise_stream = train_stream(static_cast<uint64_t>(next - 1));",
           "test_emu_linear", "*FusedEpilogues.StepAdvance*"),
    # A row tile's own group count instead of the element's: right in the first row tile only.
    Defect("reparam-wrong-philox-group", "linear_forward.cu",
           "draw_normal4(r.seed, stream, static_cast<uint64_t>(group));",
           "draw_normal4(r.seed, stream, static_cast<uint64_t>(group - first / 4));",
           "test_emu_linear", "*FusedEpilogues.Head*"),
    Defect("loss-rows-skip-last-column-tile", "linear_forward.cu",
           "for (int t = 0; t < tiles_n; ++t) bce +=",
           "for (int t = 0; t + 1 < tiles_n; ++t) bce +=",
           "test_emu_linear", "*FusedEpilogues.OutputLayerLoss*"),
    Defect("nan-guard-wrong-step", "linear_forward.cu",
           "*l.guard.first_bad_step = *l.guard.step;",
           "*l.guard.first_bad_step = *l.guard.step + 1;",
           "test_emu_linear", "*FusedEpilogues.OutputLayerNanGuard*"),
    # BatchNorm's forward epilogue: the unbiased variance where the biased one normalises, and the
    # statistics summed by the column's last block by index instead of the last to arrive (right only
    # when the blocks run in index order).
    Defect("batch-norm-normalises-by-unbiased-var", "linear_forward.cu",
           "batch_norm_batch_invstd<float>(squares / p.m, b.eps);",
           "batch_norm_batch_invstd<float>(squares / (p.m - 1), b.eps);",
           "test_emu_linear", "*FusedEpilogues.BatchNormForwardMatches*"),
    Defect("batch-norm-last-block-by-index", "linear_forward.cu",
           "if (gemm::arrives_last(p.column_counters + blockIdx.x, gridDim.y)) batch_norm_columns<T>(p, at.n0);",
           "if (blockIdx.y + 1 == gridDim.y) batch_norm_columns<T>(p, at.n0);",
           "test_emu_linear", "*FusedEpilogues.BatchNormForwardGivesTheSameBits*"),
    # BatchNorm's backward kernel (batch_norm.cu).
    Defect("batch-norm-backward-drops-a-lane", "batch_norm.cu",
           "for (int l = 0; l < kRowLanes; ++l) {",
           "for (int l = 0; l + 1 < kRowLanes; ++l) {",
           "test_emu_linear", "*BatchNormBackward*"),
    # The backward launch and its epilogues (linear_backward.cu).
    Defect("bias-grad-ignores-mask", "linear_backward.cu",
           "grad += p.mask.activation_output == nullptr ? p.dy[e] : gemm::masked(p.mask, p.dy[e], p.mask.activation_output[e]);",
           "grad += p.dy[e];",
           "test_emu_linear", "*LinearKernels.MatchReference*/fp32"),
    Defect("reparam-grad-drops-kl", "linear_backward.cu",
           "r.dmu_logvar[mu_index] = dz + r.beta * kl_grad_mu(mu);",
           "r.dmu_logvar[mu_index] = dz;",
           "test_emu_linear", "*FusedEpilogues.DecoderReparam*"),
    Defect("adam-bias-not-stored", "linear_backward.cu",
           "p.bias[j] = b, p.adam.bias_m[j] = m, p.adam.bias_v[j] = v;",
           "p.adam.bias_m[j] = m, p.adam.bias_v[j] = v;",
           "test_emu_linear", "*FusedEpilogues.Adam*"),
    # A dx block that never counts itself done: Adam's wait would hang on the device; the emulator,
    # which runs the blocks in turn, reports the wait for a block that cannot come. (Removing the
    # wait itself is not in this list: here every dx block has finished before the first dW block
    # starts, as they take the earlier tickets, so that defect cannot show; only the device's
    # concurrent blocks could.)
    Defect("dx-blocks-not-counted", "linear_backward.cu",
           "    atomicAdd(p.launch_counters + 1, 1u);\n",
           "",
           "test_emu_linear", "*FusedEpilogues.Adam*"),
    Defect("backward-tickets-not-reset", "linear_backward.cu",
           "    p.launch_counters[0] = 0;\n",
           "",
           "test_emu_linear", "*LinearKernels.SplitK*"),
    # --evaluate's importance rows (importance.cu): ε keyed by the image's place in its chunk instead
    # of in the split (right in the first chunk only), and each block's targets taken as if it
    # started the chunk (right in the first block only).
    Defect("importance-eps-keyed-by-chunk", "importance.cu",
           "static_cast<uint64_t>(p.first_image + c)",
           "static_cast<uint64_t>(c)",
           "test_emu_evaluation", "*ImportanceRows*"),
    Defect("importance-targets-ignore-block", "importance.cu",
           "const uint8_t* image = p.images + c * p.pixels;",
           "const uint8_t* image = p.images + r / p.samples_per_image * p.pixels;",
           "test_emu_evaluation", "*EmulatedEvaluationMatches*"),
    # The standalone kernels the benchmarks' library-assembled steps still launch.
    Defect("reparam-logvar-index", "reparam.cu",
           "const float mu = mu_logvar[mu_index], logvar = mu_logvar[logvar_index];",
           "const float mu = mu_logvar[mu_index], logvar = mu_logvar[mu_index];",
           "test_emu_small_kernels", "*Reparam*"),
    Defect("loss-reads-past-row", "bce_kl.cu",
           "for (int p = threadIdx.x; p < pixels; p += blockDim.x) {",
           "for (int p = threadIdx.x; p <= pixels; p += blockDim.x) {",
           "test_emu_small_kernels", "*BceKl*"),
    Defect("adam-vector-path-skips-w", "adam.cu",
           "adam_update(grad.w, param.w, first_moment.w, second_moment.w, c);",
           "",
           "test_emu_small_kernels", "*Adam*"),
    Defect("adam-bias-correction", "adam.cu",
           "coefficients = adam_coefficients<float>(hyper, *step);",
           "coefficients = adam_coefficients<float>(hyper, *step + 1);",
           "test_emu_small_kernels", "*Adam*"),
]


def restore(pristine, mutant, name):
    """Makes mutant/name the pristine file again, with a fresh mtime so that make rebuilds it."""
    shutil.copy(pristine / name, mutant / name)


def run(command, **kwargs):
    return subprocess.run(command, text=True, capture_output=True, **kwargs)


def build(build_dir, target):
    result = run(["cmake", "--build", str(build_dir), "--target", target, "-j", str(os.cpu_count() or 2)])
    return result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_passes(build_dir, target, tests):
    binary = build_dir / "tests" / "emulation" / target
    env = dict(os.environ, OMP_NUM_THREADS="1",
               ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=0")
    result = run([str(binary), f"--gtest_filter={tests}"], env=env, timeout=900)
    ran_some = "[  PASSED  ] 0 tests" not in result.stdout  # a filter matching nothing proves nothing
    return result.returncode == 0 and ran_some, (result.stdout + result.stderr)[-1500:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default=str(ROOT / "build-planted"))
    parser.add_argument("--only", nargs="*", help="defect names to plant (default: all)")
    args = parser.parse_args()
    defects = [d for d in DEFECTS if not args.only or d.name in args.only]
    build_dir = Path(args.build_dir).resolve()
    pristine, mutant = ROOT / "kernels", build_dir / "kernels-under-test"

    # A fresh copy with fresh mtimes: a build left by an earlier run may hold a mutant's objects.
    shutil.rmtree(mutant, ignore_errors=True)
    shutil.copytree(pristine, mutant, copy_function=shutil.copy)
    configure = run(["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                     f"-DVAE_EMU_KERNEL_DIR={mutant}", "-DVAE_BUILD_BENCHMARKS=OFF"])
    if configure.returncode != 0:
        print(configure.stdout[-2000:], configure.stderr[-2000:])
        return 1

    # The tests must pass on the unmutated kernels, or a "catch" would prove nothing.
    for target, tests in sorted({(d.target, d.tests) for d in defects}):
        built, log = build(build_dir, target)
        passed, output = test_passes(build_dir, target, tests) if built else (False, log)
        if not passed:
            print(f"planted defects: {target} --gtest_filter={tests} fails on the unmutated kernels:\n{output}")
            return 1

    escaped = 0
    for defect in defects:
        restore(pristine, mutant, defect.file)
        source = (mutant / defect.file).read_text()
        if source.count(defect.old) != 1:
            print(f"{defect.name}: cannot be planted, the code it mutates changed ({defect.file}); update {__file__}")
            escaped += 1
            continue
        (mutant / defect.file).write_text(source.replace(defect.old, defect.new))
        built, log = build(build_dir, defect.target)
        if not built:
            print(f"{defect.name}: the mutated {defect.file} does not compile:\n{log}")
            escaped += 1
        else:
            passed, _ = test_passes(build_dir, defect.target, defect.tests)
            print(f"{defect.name}: {'ESCAPED' if passed else 'caught'} by {defect.target} --gtest_filter={defect.tests}")
            escaped += passed
        restore(pristine, mutant, defect.file)
    print(f"planted defects: {len(defects) - escaped} of {len(defects)} caught")
    return 0 if escaped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
