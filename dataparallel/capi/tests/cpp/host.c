/*
 * A C99 host of neuron_dp.h, run by `cargo xtask c-tests` against the mock libnrt.
 *
 * Usage: host_c MODEL.neff   (the affine mock model y = 2x + 1, float32 [4, 8])
 *
 * Creates an engine on 4 cores, runs several batch sizes with dynamic batching and checks
 * every output value, then checks that a bad device-id string, a wrong shape, a wrong dtype
 * and a NULL pointer each come back as an error code with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "neuron_dp.h"

#define FEATURES 8

static int failures = 0;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            fprintf(stderr, "host.c:%d: check failed: %s: ", __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                  \
            fprintf(stderr, "\n");                         \
            failures++;                                    \
        }                                                  \
    } while (0)

/* Checks that `status` is `expected` and that a message came with it. */
static void expect_error(ndp_status_t status, ndp_status_t expected, const char *what) {
    const char *message = ndp_last_error();
    CHECK(status == expected, "%s: status %d, expected %d (%s)", what, (int)status,
          (int)expected, message);
    CHECK(message != NULL && message[0] != '\0', "%s: no error message", what);
    printf("  %s -> %d: %s\n", what, (int)status, message);
}

static ndp_tensor_t tensor(ndp_dtype_t dtype, const size_t *shape, void *data, size_t bytes) {
    ndp_tensor_t t;
    t.name = NULL;
    t.dtype = dtype;
    t.ndim = 2;
    t.shape = shape;
    t.data = data;
    t.byte_len = bytes;
    return t;
}

static void run_batch(const ndp_engine_t *engine, size_t rows) {
    size_t in_shape[2];
    size_t out_shape[2] = {0, 0};
    size_t ndim = 2;
    size_t i;
    float *x = malloc((rows * FEATURES + 1) * sizeof(float));
    float *y = malloc((rows * FEATURES + 1) * sizeof(float));
    ndp_tensor_t input, output;
    ndp_status_t status;

    in_shape[0] = rows;
    in_shape[1] = FEATURES;
    for (i = 0; i < rows * FEATURES; i++) {
        x[i] = (float)i * 0.5f - 3.0f;
        y[i] = -12345.0f;
    }
    input = tensor(NDP_DTYPE_FLOAT32, in_shape, x, rows * FEATURES * sizeof(float));

    status = ndp_engine_output_shape(engine, &input, 1, 0, out_shape, &ndim);
    CHECK(status == NDP_OK, "output_shape(%zu rows): %s", rows, ndp_last_error());
    CHECK(ndim == 2 && out_shape[0] == rows && out_shape[1] == FEATURES,
          "output shape for %zu rows is [%zu, %zu] (rank %zu)", rows, out_shape[0],
          out_shape[1], ndim);

    output = tensor(NDP_DTYPE_FLOAT32, out_shape, y, rows * FEATURES * sizeof(float));
    status = ndp_engine_forward(engine, &input, 1, &output, 1);
    CHECK(status == NDP_OK, "forward(%zu rows): %s", rows, ndp_last_error());
    CHECK(ndp_last_error()[0] == '\0', "a message after success: %s", ndp_last_error());
    if (status == NDP_OK) {
        size_t bad = 0;
        for (i = 0; i < rows * FEATURES; i++) {
            float want = x[i] * 2.0f + 1.0f;
            if (y[i] != want) {
                if (bad++ < 3) {
                    CHECK(y[i] == want, "rows %zu: y[%zu] = %g, want %g", rows, i,
                          (double)y[i], (double)want);
                }
            }
        }
        printf("  forward of %zu rows: %zu values checked, %zu wrong\n", rows,
               rows * FEATURES, bad);
    }
    free(x);
    free(y);
}

int main(int argc, char **argv) {
    ndp_config_t config;
    ndp_engine_t *engine = NULL;
    ndp_engine_t *bad_engine = (ndp_engine_t *)1;
    ndp_status_t status;
    ndp_tensor_info_t info;
    size_t n = 0, i;
    const char *version = NULL;
    static const size_t batches[] = {1, 3, 4, 7, 16, 33, 64};

    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.neff\n", argv[0]);
        return 2;
    }
    printf("neuron-dp %s (C99 host)\n", ndp_version());

    /* Four cores by string, dynamic batching on. */
    config = ndp_config_default();
    config.device_list = "nc:0,nc:1,nc:2,nc:3";
    config.dynamic_batching = true;
    status = ndp_engine_create_from_path(argv[1], &config, &engine);
    if (status != NDP_OK) {
        fprintf(stderr, "create: %d: %s\n", (int)status, ndp_last_error());
        return 1;
    }

    CHECK(ndp_engine_runtime_version(engine, &version) == NDP_OK, "%s", ndp_last_error());
    printf("runtime %s\n", version);
    CHECK(ndp_engine_num_cores(engine, &n) == NDP_OK && n == 4, "cores: %zu", n);
    for (i = 0; i < n; i++) {
        int32_t logical = -2, physical = -2;
        CHECK(ndp_engine_core(engine, i, &logical, &physical) == NDP_OK, "%s",
              ndp_last_error());
        CHECK(logical == (int32_t)i, "core %zu: logical %d", i, (int)logical);
        CHECK(physical >= -1, "core %zu: physical %d", i, (int)physical);
        printf("  core %zu: nc:%d (physical %d)\n", i, (int)logical, (int)physical);
    }
    CHECK(ndp_engine_num_inputs(engine, &n) == NDP_OK && n == 1, "inputs: %zu", n);
    CHECK(ndp_engine_num_outputs(engine, &n) == NDP_OK && n == 1, "outputs: %zu", n);
    CHECK(ndp_engine_input_info(engine, 0, &info) == NDP_OK, "%s", ndp_last_error());
    CHECK(strcmp(info.name, "x") == 0, "input name %s", info.name);
    CHECK(info.dtype == NDP_DTYPE_FLOAT32, "input dtype %d", (int)info.dtype);
    CHECK(info.ndim == 2 && info.shape[0] == 4 && info.shape[1] == FEATURES,
          "input shape");
    CHECK(info.compiled_batch == 4, "compiled batch %zu", info.compiled_batch);
    CHECK(ndp_engine_output_info(engine, 0, &info) == NDP_OK, "%s", ndp_last_error());
    CHECK(strcmp(info.name, "y") == 0, "output name %s", info.name);

    for (i = 0; i < sizeof batches / sizeof batches[0]; i++) {
        run_batch(engine, batches[i]);
    }

    printf("errors:\n");
    {
        /* A bad device-id string. */
        ndp_config_t bad = ndp_config_default();
        ndp_engine_t *none = bad_engine;
        bad.device_list = "nc:0,nc:zz";
        status = ndp_engine_create_from_path(argv[1], &bad, &none);
        expect_error(status, NDP_ERR_DEVICE_IDS, "bad device string");
        CHECK(none == NULL, "engine_out not cleared on failure");
    }
    {
        /* A wrong shape, a wrong dtype, NULL pointers. */
        float x[4 * FEATURES] = {0};
        float y[4 * FEATURES] = {0};
        size_t good[2] = {4, FEATURES};
        size_t wrong[2] = {4, FEATURES - 1};
        ndp_tensor_t input = tensor(NDP_DTYPE_FLOAT32, wrong, x, sizeof x);
        ndp_tensor_t output = tensor(NDP_DTYPE_FLOAT32, good, y, sizeof y);
        status = ndp_engine_forward(engine, &input, 1, &output, 1);
        expect_error(status, NDP_ERR_INVALID_INPUT, "wrong shape");

        input = tensor(NDP_DTYPE_INT32, good, x, sizeof x);
        status = ndp_engine_forward(engine, &input, 1, &output, 1);
        expect_error(status, NDP_ERR_INVALID_INPUT, "wrong dtype");

        input = tensor(NDP_DTYPE_FLOAT32, good, x, sizeof x);
        status = ndp_engine_forward(engine, NULL, 1, &output, 1);
        expect_error(status, NDP_ERR_NULL_POINTER, "NULL inputs");
        status = ndp_engine_forward(NULL, &input, 1, &output, 1);
        expect_error(status, NDP_ERR_NULL_POINTER, "NULL engine");
        input.data = NULL;
        status = ndp_engine_forward(engine, &input, 1, &output, 1);
        expect_error(status, NDP_ERR_NULL_POINTER, "NULL data");
        status = ndp_engine_num_cores(engine, NULL);
        expect_error(status, NDP_ERR_NULL_POINTER, "NULL out-pointer");
        CHECK(ndp_last_nrt_status() == -1, "nrt status %d", (int)ndp_last_nrt_status());
    }

    CHECK(ndp_engine_destroy(engine) == NDP_OK, "%s", ndp_last_error());
    status = ndp_engine_num_cores(engine, &n);
    expect_error(status, NDP_ERR_INVALID_ARGUMENT, "destroyed engine");

    if (failures != 0) {
        fprintf(stderr, "host.c: %d checks failed\n", failures);
        return 1;
    }
    printf("host.c: all checks passed\n");
    return 0;
}
