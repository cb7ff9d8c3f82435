#pragma once
// Merge layers (Keras Add, Subtract, Multiply, Average, Maximum, Concatenate): the joins of a
// graph network. Elementwise over inputs of one shape, or a concatenation along the last axis
// (channels, in NHWC). Memory-bound loops the compiler vectorises; threads split the elements.
#include <cstdint>

namespace cnnfast {

enum class MergeOp : int { add, subtract, multiply, average, maximum };

// inputs[i] (n,), i < count; out (n,) = inputs[0] op inputs[1] op ... (subtract: count == 2,
// average: the sum divided by count, maximum: elementwise max). out may alias inputs[0].
// `relu` (a 2-input add only; std::invalid_argument otherwise): then out = max(out, 0), the
// activation kernel's relu (the train plan's add + relu fusion, ResNet's join).
void merge_forward(float* out, const float* const* inputs, int64_t count, int64_t n, MergeOp op,
                   bool relu = false);

// dy (n,); dinputs[i] (n,) receives d out / d inputs[i] * dy (overwritten), or is null when
// that input needs no gradient. multiply and maximum read the inputs; maximum sends the
// gradient to the first input holding the maximum (TensorFlow's rule for ties). dinputs[i]
// may alias dy only for add, subtract and average. relu_y (add only; std::invalid_argument
// otherwise): the output of a ReLU fused after the join (merge_forward's `relu`); dy is
// masked where relu_y <= 0, as activation_backward's relu would. An add's dinputs may repeat a
// buffer (two inputs sharing one gradient): it is written once.
void merge_backward(float* const* dinputs, const float* dy, const float* const* inputs,
                    int64_t count, int64_t n, MergeOp op, const float* relu_y = nullptr);

// inputs[i] (rows, widths[i]); out (rows, sum of widths): the inputs side by side per row.
void concat_forward(float* out, const float* const* inputs, const int64_t* widths, int64_t count,
                    int64_t rows);

// dy (rows, sum of widths); dinputs[i] (rows, widths[i]) overwritten, or null.
void concat_backward(float* const* dinputs, const float* dy, const int64_t* widths,
                     int64_t count, int64_t rows);

}  // namespace cnnfast
