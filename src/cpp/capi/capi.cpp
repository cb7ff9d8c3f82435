// The C API (include/cnnfast.h) over the model-file reader and the inference Network.
// Every entry point catches C++ exceptions: nothing propagates across the C boundary.
#include "cnnfast.h"

#include <exception>
#include <new>
#include <string>

#include "model_file.h"
#include "parallel.h"

struct cnnfast_model {
    std::unique_ptr<cnnfast::LoadedModel> loaded;
};

namespace {

thread_local std::string g_last_error;

void set_error(const std::string& message) { g_last_error = message; }

const std::vector<int64_t>* shape_of(const cnnfast_model* model, bool input) {
    if (!model) {
        set_error("model is NULL");
        return nullptr;
    }
    const cnnfast::Network& net = *model->loaded->network;
    return input ? &net.input_shape() : &net.output_shape();
}

int64_t dim_of(const cnnfast_model* model, bool input, int axis) {
    const auto* shape = shape_of(model, input);
    if (!shape) return -1;
    if (axis < 0 || axis >= static_cast<int>(shape->size())) {
        set_error("axis " + std::to_string(axis) + " out of range");
        return -1;
    }
    return (*shape)[axis];
}

}  // namespace

extern "C" {

cnnfast_model* cnnfast_model_load(const char* path) {
    if (!path) {
        set_error("path is NULL");
        return nullptr;
    }
    try {
        auto* model = new cnnfast_model;
        try {
            model->loaded = cnnfast::load_model_file(path);
        } catch (...) {
            delete model;
            throw;
        }
        g_last_error.clear();
        return model;
    } catch (const std::bad_alloc&) {
        set_error(std::string(path) + ": out of memory");
    } catch (const std::exception& e) {
        set_error(e.what());
    }
    return nullptr;
}

void cnnfast_model_free(cnnfast_model* model) { delete model; }

int cnnfast_model_predict(const cnnfast_model* model, const float* input, int64_t batch,
                          float* output) {
    if (!model || !input || !output) {
        set_error("cnnfast_model_predict: model, input and output must not be NULL");
        return 1;
    }
    if (batch < 0) {
        set_error("cnnfast_model_predict: batch must be >= 0, got " + std::to_string(batch));
        return 1;
    }
    try {
        model->loaded->network->forward(output, input, batch);
        return 0;
    } catch (const std::bad_alloc&) {
        set_error("cnnfast_model_predict: out of memory");
    } catch (const std::exception& e) {
        set_error(std::string("cnnfast_model_predict: ") + e.what());
    }
    return 1;
}

int cnnfast_model_input_rank(const cnnfast_model* model) {
    const auto* s = shape_of(model, true);
    return s ? static_cast<int>(s->size()) : -1;
}

int64_t cnnfast_model_input_dim(const cnnfast_model* model, int axis) { return dim_of(model, true, axis); }

int64_t cnnfast_model_input_size(const cnnfast_model* model) {
    return model ? model->loaded->network->input_size() : -1;
}

int cnnfast_model_output_rank(const cnnfast_model* model) {
    const auto* s = shape_of(model, false);
    return s ? static_cast<int>(s->size()) : -1;
}

int64_t cnnfast_model_output_dim(const cnnfast_model* model, int axis) { return dim_of(model, false, axis); }

int64_t cnnfast_model_output_size(const cnnfast_model* model) {
    return model ? model->loaded->network->output_size() : -1;
}

void cnnfast_set_num_threads(int n) { cnnfast::set_num_threads(n); }

const char* cnnfast_last_error(void) { return g_last_error.c_str(); }

const char* cnnfast_version(void) { return CNNFAST_VERSION; }

}  // extern "C"
