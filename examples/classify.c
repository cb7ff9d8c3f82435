/* classify: run a cnnfast model file on an image without Python.
 *
 *   classify MODEL IMAGE [--scale S] [--threads N]
 *
 * IMAGE is a binary PGM (P5, grayscale) or PPM (P6, RGB) with maxval <= 255, or a raw file of
 * float32 values (any other extension: exactly one sample, input_size floats, native order).
 * PGM/PPM pixels are multiplied by S (default 1/255). Prints the predicted class, then one
 * "class score" line per output. Build:  cc classify.c -I<include> -L<lib> -lcnnfast
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnfast.h"

static int read_token(FILE* f, long* value) {
    int c;
    do {  /* skip whitespace and comments */
        c = fgetc(f);
        if (c == '#')
            while (c != '\n' && c != EOF) c = fgetc(f);
    } while (c == ' ' || c == '\t' || c == '\n' || c == '\r');
    if (c < '0' || c > '9') return -1;
    *value = 0;
    while (c >= '0' && c <= '9') {
        *value = *value * 10 + (c - '0');
        if (*value > 100000) return -1;
        c = fgetc(f);
    }
    return 0;
}

/* Reads a PGM/PPM into `input` (H*W*C floats, channels last); returns 0 on success. */
static int read_pnm(FILE* f, float* input, const cnnfast_model* model, float scale) {
    char magic[2];
    long w, h, maxval;
    if (fread(magic, 1, 2, f) != 2 || magic[0] != 'P' || (magic[1] != '5' && magic[1] != '6')) return -1;
    long channels = magic[1] == '5' ? 1 : 3;
    if (read_token(f, &w) || read_token(f, &h) || read_token(f, &maxval) || maxval <= 0 || maxval > 255) {
        fprintf(stderr, "classify: bad PNM header\n");
        return -1;
    }
    if (cnnfast_model_input_rank(model) != 3 || cnnfast_model_input_dim(model, 0) != h ||
        cnnfast_model_input_dim(model, 1) != w || cnnfast_model_input_dim(model, 2) != channels) {
        fprintf(stderr, "classify: image is %ldx%ldx%ld, the model expects %lldx%lldx%lld\n", h, w,
                channels, (long long)cnnfast_model_input_dim(model, 0),
                (long long)cnnfast_model_input_dim(model, 1), (long long)cnnfast_model_input_dim(model, 2));
        return -1;
    }
    size_t n = (size_t)(h * w * channels);
    unsigned char* pixels = malloc(n);
    if (!pixels || fread(pixels, 1, n, f) != n) {
        fprintf(stderr, "classify: truncated image data\n");
        free(pixels);
        return -1;
    }
    for (size_t i = 0; i < n; ++i) input[i] = pixels[i] * scale;
    free(pixels);
    return 0;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL IMAGE [--scale S] [--threads N]\n", argv[0]);
        return 2;
    }
    float scale = 1.0f / 255.0f;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--scale") == 0) scale = (float)atof(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0) cnnfast_set_num_threads(atoi(argv[i + 1]));
    }
    cnnfast_model* model = cnnfast_model_load(argv[1]);
    if (!model) {
        fprintf(stderr, "classify: %s\n", cnnfast_last_error());
        return 1;
    }
    int64_t in_size = cnnfast_model_input_size(model), out_size = cnnfast_model_output_size(model);
    float* input = malloc(sizeof(float) * (size_t)in_size);
    float* output = malloc(sizeof(float) * (size_t)out_size);
    FILE* f = fopen(argv[2], "rb");
    int status = 1;
    if (!input || !output || !f) {
        fprintf(stderr, "classify: cannot read %s\n", argv[2]);
        goto done;
    }
    const char* dot = strrchr(argv[2], '.');
    if (dot && (strcmp(dot, ".pgm") == 0 || strcmp(dot, ".ppm") == 0)) {
        if (read_pnm(f, input, model, scale)) goto done;
    } else if (fread(input, sizeof(float), (size_t)in_size, f) != (size_t)in_size || fgetc(f) != EOF) {
        fprintf(stderr, "classify: %s must hold exactly %lld float32 values\n", argv[2], (long long)in_size);
        goto done;
    }
    if (cnnfast_model_predict(model, input, 1, output)) {
        fprintf(stderr, "classify: %s\n", cnnfast_last_error());
        goto done;
    }
    int64_t best = 0;
    for (int64_t k = 1; k < out_size; ++k)
        if (output[k] > output[best]) best = k;
    printf("class %lld\n", (long long)best);
    for (int64_t k = 0; k < out_size; ++k) printf("%lld %.9g\n", (long long)k, output[k]);
    status = 0;
done:
    if (f) fclose(f);
    free(input);
    free(output);
    cnnfast_model_free(model);
    return status;
}
