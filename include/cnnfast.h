/* cnnfast C API: run a model saved by cnnfast (Python: model.save(path)) without Python.
 * Quantized models (Python: cnnfast.quantize(model, x).save(path)) load the same way and run
 * their Conv2D and Dense layers on 8-bit integers; inputs and outputs stay float32.
 *
 * Inputs and outputs are float32, channels-last, batch first: an input batch is
 * (batch, H, W, C) or (batch, features) contiguous in row-major order.
 *
 * Thread safety: a loaded model is read-only; any number of threads may call
 * cnnfast_model_predict on the same model at once (each call uses its own scratch memory).
 * Errors: functions that can fail return NULL or a non-zero status, and
 * cnnfast_last_error() then describes the failure for the calling thread.
 */
#ifndef CNNFAST_H
#define CNNFAST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define CNNFAST_API __declspec(dllexport)
#else
#define CNNFAST_API __attribute__((visibility("default")))
#endif

typedef struct cnnfast_model cnnfast_model;

/* Load a model file; NULL on failure (see cnnfast_last_error). */
CNNFAST_API cnnfast_model* cnnfast_model_load(const char* path);

/* Release a model (NULL is allowed). */
CNNFAST_API void cnnfast_model_free(cnnfast_model* model);

/* Forward pass of `batch` samples: input holds batch * cnnfast_model_input_size() floats,
 * output receives batch * cnnfast_model_output_size() floats. Returns 0 on success. */
CNNFAST_API int cnnfast_model_predict(const cnnfast_model* model, const float* input,
                                      int64_t batch, float* output);

/* Per-sample shapes (batch axis excluded): rank, and the dimension at `axis` (0-based;
 * -1 if out of range). Sizes are the products of the dimensions. */
CNNFAST_API int cnnfast_model_input_rank(const cnnfast_model* model);
CNNFAST_API int64_t cnnfast_model_input_dim(const cnnfast_model* model, int axis);
CNNFAST_API int64_t cnnfast_model_input_size(const cnnfast_model* model);
CNNFAST_API int cnnfast_model_output_rank(const cnnfast_model* model);
CNNFAST_API int64_t cnnfast_model_output_dim(const cnnfast_model* model, int axis);
CNNFAST_API int64_t cnnfast_model_output_size(const cnnfast_model* model);

/* Set the number of threads kernels use (<= 0: OMP_NUM_THREADS or all cores). */
CNNFAST_API void cnnfast_set_num_threads(int n);

/* Message describing the last failure on this thread ("" if none). */
CNNFAST_API const char* cnnfast_last_error(void);

/* Library version, e.g. "0.1.0". */
CNNFAST_API const char* cnnfast_version(void);

#ifdef __cplusplus
}
#endif

#endif /* CNNFAST_H */
