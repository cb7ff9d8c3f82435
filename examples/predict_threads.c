/* predict_threads: several threads call cnnfast_model_predict on one loaded model at once.
 *
 *   predict_threads MODEL INPUT.f32 EXPECTED.f32 THREADS CALLS
 *
 * INPUT holds `batch` samples of float32 input, EXPECTED the matching outputs (from Python's
 * model.predict). Every thread runs CALLS predictions and compares each with EXPECTED;
 * prints "ok" and exits 0 when all agree bit for bit.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnfast.h"

static const cnnfast_model* g_model;
static float *g_input, *g_expected;
static int64_t g_batch, g_calls;
static int g_failures;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static float* read_floats(const char* path, int64_t* count) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    float* data = malloc((size_t)bytes);
    if (data && fread(data, 1, (size_t)bytes, f) != (size_t)bytes) {
        free(data);
        data = NULL;
    }
    fclose(f);
    *count = bytes / (long)sizeof(float);
    return data;
}

static void* worker(void* arg) {
    (void)arg;
    int64_t out_n = g_batch * cnnfast_model_output_size(g_model);
    float* out = malloc(sizeof(float) * (size_t)out_n);
    int bad = 0;
    for (int64_t c = 0; c < g_calls && out; ++c) {
        if (cnnfast_model_predict(g_model, g_input, g_batch, out) ||
            memcmp(out, g_expected, sizeof(float) * (size_t)out_n) != 0)
            ++bad;
    }
    pthread_mutex_lock(&g_lock);
    g_failures += bad + (out == NULL);
    pthread_mutex_unlock(&g_lock);
    free(out);
    return NULL;
}

int main(int argc, char** argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL INPUT.f32 EXPECTED.f32 THREADS CALLS\n", argv[0]);
        return 2;
    }
    cnnfast_model* model = cnnfast_model_load(argv[1]);
    if (!model) {
        fprintf(stderr, "%s\n", cnnfast_last_error());
        return 1;
    }
    int64_t n_in, n_out;
    g_model = model;
    g_input = read_floats(argv[2], &n_in);
    g_expected = read_floats(argv[3], &n_out);
    g_batch = n_in / cnnfast_model_input_size(model);
    g_calls = atol(argv[5]);
    int threads = atoi(argv[4]);
    if (!g_input || !g_expected || n_out != g_batch * cnnfast_model_output_size(model) || threads < 1 ||
        threads > 64) {
        fprintf(stderr, "bad inputs\n");
        return 1;
    }
    pthread_t tid[64];
    for (int t = 0; t < threads; ++t) pthread_create(&tid[t], NULL, worker, NULL);
    for (int t = 0; t < threads; ++t) pthread_join(tid[t], NULL);
    cnnfast_model_free(model);
    free(g_input);
    free(g_expected);
    if (g_failures) {
        printf("%d mismatches\n", g_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
