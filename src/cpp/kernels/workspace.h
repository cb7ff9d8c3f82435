#pragma once
// The one scratch arena of every kernel family: grow-only, 64-byte-aligned buffers owned by the
// calling thread and reused across calls, so a kernel allocates only when a slot first needs more
// than it holds, and never once shapes settle. Being per thread, the buffers of two threads (the
// threads of one parallel region, or two calls running side by side on one Network) never meet.
//
// Each buffer has a named slot: a kernel's buffers live in different slots, and so do those of
// kernels that call each other (a convolution's columns and the packed panels of the GEMM it
// feeds). A slot's contents are undefined when a kernel takes it; its size is the kernel's to ask.
#include <cstdint>

namespace cnnfast {

enum class Scratch : int {
    conv_columns,        // im2col columns; the direct kernels' aligned dy rows
    conv_band,           // a zero-padded band of the input (direct kernels)
    conv_shared,         // the threads' shared partials or transposed weights of one call
    conv_offsets,        // receptive-field offsets (int64)
    conv_weights,        // flipped or 64-byte-aligned weight copies
    conv_lane_partials,  // single-channel backward-weights lane partials
    conv_stream_readers,  // the weight-streaming walk's readers per tap (int64)
    conv_bf16_input,     // mixed precision: a convolution's input (or dy) rounded to bfloat16
    conv_bf16_weights,   // mixed precision: its kernel rounded to bfloat16
    conv_bf16_gradient,  // mixed precision: its dy rounded to bfloat16 (backward-weights)
    winograd_weights,    // U, the transformed kernel
    winograd_weights_bf16,  // U's positions packed for the bfloat16 GEMM (mixed precision)
    winograd_inputs,     // V, transformed input patches (or dy tiles)
    winograd_products,   // M, position GEMM products (and the fused block's gradients)
    winograd_padded_image,  // zero-padded input rows for the input transform
    gemm_pack_a,
    gemm_pack_b,
    gemm_kept_a,         // packed A kept across column blocks
    gemm_narrow_b,       // the unpacked A^T B route's chunk of B
    gemm_bf16_a,         // the bfloat16 GEMM's packed row block of A and its edge tile
    gemm_bf16_b,         // the bfloat16 GEMM's packed B (shared by the threads of one call)
    gemm_bf16_rows,      // the bfloat16 GEMM's rows of B converted before their transpose
    gemm_int8_b,         // the int8 GEMM's packed B (shared by the threads of one call)
    amx_b_tails,         // AMX: each B panel's last rows % 16, zero-padded to a tile
    gemm_measure_c,      // the micro-kernel measurement's C tiles
    lrn_rows,            // a zero-padded row and two rows of C
    bias_grad_partials,  // dense_bias_grad's per-thread double sums
    prelu_partials,      // PReLU backward's per-block double sums of dalpha
    batchnorm_partials,  // batch normalization's per-chunk double sums of each channel
    batchnorm_channels,  // batch normalization's per-channel sums and coefficients
    global_pool_sums,    // global average pooling's per-channel double sums (per thread)
    softmax_row,         // one row of exp(x - max)
    network_values,      // Network::forward's activation arena (every planned buffer)
    int8_input,          // an int8 step's input quantized to uint8 (quantized.h)
    int8_padded,         // the int8 convolution's input with its padding, in uint8
    int8_columns,        // the int8 convolution's uint8 im2col columns of one row chunk
    int8_sums,           // the int8 kernels' int32 sums of one row chunk
    int8_epilogue,       // the int8 epilogue's per-channel multipliers and zero-point shares
    int8_narrow_weights,  // the int8 convolution's filters laid out for the narrow-layer sums
    int8_narrow_sums,    // one thread's int32 sums of 16 pixels (narrow-layer sums)
    int8_narrow_amx_weights,  // those filters in AMX tiles (the narrow layers' AMX form)
    int8_float_tile,     // one tile's float outputs, activated (and pooled) before quantizing
    count
};

// At least `bytes` bytes, 64-byte aligned, of the calling thread's `slot`; throws std::bad_alloc.
void* workspace_bytes(Scratch slot, int64_t bytes);

// At least `count` values of T in the calling thread's `slot`.
template <class T = float>
T* workspace(Scratch slot, int64_t count) {
    return static_cast<T*>(workspace_bytes(slot, count * static_cast<int64_t>(sizeof(T))));
}

}  // namespace cnnfast
