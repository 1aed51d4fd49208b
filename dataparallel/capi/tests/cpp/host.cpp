// A C++17 host of neuron_dp.h, run by `cargo xtask c-tests` against the mock libnrt.
//
// Usage: host_cpp MODEL.neff   (the affine mock model y = 2x + 1, float32 [4, 8])
//
// Creates an engine on 4 cores (by integer ids), runs several batch sizes with dynamic
// batching from several threads at once and checks every output value, then checks that a
// bad device-id string, a wrong shape, a wrong dtype and a null pointer each come back as an
// error code with a message, and that a destroyed handle is rejected.
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "neuron_dp.h"

namespace {

constexpr std::size_t kFeatures = 8;
std::atomic<int> failures{0};

void check(bool ok, const std::string &what) {
    if (!ok) {
        std::fprintf(stderr, "host.cpp: check failed: %s\n", what.c_str());
        failures++;
    }
}

// Owns an engine handle.
struct EngineDeleter {
    void operator()(ndp_engine_t *engine) const { ndp_engine_destroy(engine); }
};
using Engine = std::unique_ptr<ndp_engine_t, EngineDeleter>;

ndp_tensor_t tensor(ndp_dtype_t dtype, const std::size_t *shape, void *data, std::size_t bytes) {
    ndp_tensor_t t{};
    t.name = nullptr;
    t.dtype = dtype;
    t.ndim = 2;
    t.shape = shape;
    t.data = data;
    t.byte_len = bytes;
    return t;
}

void expect_error(ndp_status_t status, ndp_status_t expected, const char *what) {
    std::string message = ndp_last_error();
    check(status == expected, std::string(what) + ": status " + std::to_string(status) +
                                  ", expected " + std::to_string(expected) + " (" + message +
                                  ")");
    check(!message.empty(), std::string(what) + ": no error message");
    std::printf("  %s -> %d: %s\n", what, static_cast<int>(status), message.c_str());
}

// Runs `rows` rows (named input and output) and checks every value; returns values checked.
std::size_t run_batch(const ndp_engine_t *engine, std::size_t rows, float offset) {
    std::vector<float> x(rows * kFeatures), y(rows * kFeatures, -1.0f);
    for (std::size_t i = 0; i < x.size(); i++) {
        x[i] = static_cast<float>(i) * 0.25f + offset;
    }
    const std::size_t in_shape[2] = {rows, kFeatures};
    ndp_tensor_t input = tensor(NDP_DTYPE_FLOAT32, in_shape, x.data(), x.size() * sizeof(float));
    input.name = "x";

    std::size_t rank = 0;
    ndp_status_t status = ndp_engine_output_shape(engine, &input, 1, 0, nullptr, &rank);
    check(status == NDP_ERR_BUFFER_TOO_SMALL && rank == 2, "output rank query");
    std::size_t out_shape[2] = {0, 0};
    status = ndp_engine_output_shape(engine, &input, 1, 0, out_shape, &rank);
    check(status == NDP_OK && out_shape[0] == rows && out_shape[1] == kFeatures,
          "output shape for " + std::to_string(rows) + " rows: " + ndp_last_error());

    ndp_tensor_t output =
        tensor(NDP_DTYPE_FLOAT32, out_shape, y.data(), y.size() * sizeof(float));
    output.name = "y";
    status = ndp_engine_forward(engine, &input, 1, &output, 1);
    check(status == NDP_OK,
          "forward of " + std::to_string(rows) + " rows: " + ndp_last_error());
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < x.size(); i++) {
        if (y[i] != x[i] * 2.0f + 1.0f) {
            wrong++;
        }
    }
    check(wrong == 0, std::to_string(wrong) + " wrong values for " + std::to_string(rows) +
                          " rows");
    return x.size();
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s MODEL.neff\n", argv[0]);
        return 2;
    }
    std::printf("neuron-dp %s (C++17 host)\n", ndp_version());

    ndp_config_t config = ndp_config_default();
    const std::int32_t ids[4] = {0, 1, 2, 3};
    config.device_ids = ids;
    config.num_device_ids = 4;
    config.dynamic_batching = true;
    ndp_engine_t *raw = nullptr;
    ndp_status_t status = ndp_engine_create_from_path(argv[1], &config, &raw);
    if (status != NDP_OK) {
        std::fprintf(stderr, "create: %d: %s\n", static_cast<int>(status), ndp_last_error());
        return 1;
    }
    Engine engine(raw);

    std::size_t cores = 0;
    check(ndp_engine_num_cores(engine.get(), &cores) == NDP_OK && cores == 4, "4 cores");
    for (std::size_t i = 0; i < cores; i++) {
        std::int32_t logical = -2;
        std::int32_t physical = -2;
        check(ndp_engine_core(engine.get(), i, &logical, &physical) == NDP_OK, "core query");
        check(logical == static_cast<std::int32_t>(i), "logical core");
        std::printf("  core %zu: nc:%d (physical %d)\n", i, logical, physical);
    }
    ndp_tensor_info_t info{};
    check(ndp_engine_input_info(engine.get(), 0, &info) == NDP_OK && info.compiled_batch == 4,
          "compiled batch");
    expect_error(ndp_engine_input_info(engine.get(), 7, &info), NDP_ERR_INVALID_ARGUMENT,
                 "input index out of range");

    // Several batch sizes from several threads at once, on one engine.
    const std::size_t batches[] = {1, 2, 4, 5, 9, 16, 31, 100};
    std::atomic<std::size_t> checked{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([&, t] {
            for (std::size_t rows : batches) {
                checked += run_batch(engine.get(), rows, static_cast<float>(t) - 8.0f);
            }
        });
    }
    for (auto &thread : threads) {
        thread.join();
    }
    std::printf("forwards from 4 threads: %zu values checked\n", checked.load());

    std::printf("errors:\n");
    {
        ndp_config_t bad = ndp_config_default();
        bad.device_list = "nc:0,nc:99";
        ndp_engine_t *none = nullptr;
        expect_error(ndp_engine_create_from_path(argv[1], &bad, &none), NDP_ERR_DEVICE_IDS,
                     "bad device string");
        check(none == nullptr, "no engine on failure");
    }
    {
        std::vector<float> x(4 * kFeatures, 1.0f), y(4 * kFeatures);
        const std::size_t good[2] = {4, kFeatures};
        const std::size_t wrong[2] = {4, kFeatures + 1};
        ndp_tensor_t input = tensor(NDP_DTYPE_FLOAT32, wrong, x.data(), x.size() * 4);
        ndp_tensor_t output = tensor(NDP_DTYPE_FLOAT32, good, y.data(), y.size() * 4);
        expect_error(ndp_engine_forward(engine.get(), &input, 1, &output, 1),
                     NDP_ERR_INVALID_INPUT, "wrong shape");
        input = tensor(NDP_DTYPE_UINT32, good, x.data(), x.size() * 4);
        expect_error(ndp_engine_forward(engine.get(), &input, 1, &output, 1),
                     NDP_ERR_INVALID_INPUT, "wrong dtype");
        input = tensor(NDP_DTYPE_FLOAT32, good, x.data(), x.size() * 4);
        output.byte_len = 4;
        expect_error(ndp_engine_forward(engine.get(), &input, 1, &output, 1),
                     NDP_ERR_INVALID_OUTPUT, "short output buffer");
        output.byte_len = y.size() * 4;
        expect_error(ndp_engine_forward(engine.get(), &input, 1, nullptr, 1),
                     NDP_ERR_NULL_POINTER, "null outputs");
        input.shape = nullptr;
        expect_error(ndp_engine_forward(engine.get(), &input, 1, &output, 1),
                     NDP_ERR_NULL_POINTER, "null shape");
        expect_error(ndp_engine_create_from_path(nullptr, nullptr, nullptr),
                     NDP_ERR_NULL_POINTER, "null everything");
    }

    ndp_engine_t *stale = engine.get();
    check(ndp_engine_destroy(engine.release()) == NDP_OK, "destroy");
    expect_error(ndp_engine_destroy(stale), NDP_ERR_INVALID_ARGUMENT, "destroy twice");

    if (failures != 0) {
        std::fprintf(stderr, "host.cpp: %d checks failed\n", failures.load());
        return 1;
    }
    std::printf("host.cpp: all checks passed\n");
    return 0;
}
