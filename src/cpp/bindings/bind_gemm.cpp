#include "bind_util.h"
#include "fma_peak.h"
#include "gemm.h"
#include "gemm_bf16.h"
#include "gemm_u8s8.h"

namespace cnnfast::bind {

// c (M,N) = alpha * op(a) @ op(b) + beta * c, written in place; op(a) (M,K), op(b) (K,N).
// Optional fused epilogue: + bias (N,) per row, then ReLU.
void bind_gemm(py::module_& m) {
    m.def("sgemm_simd_path", &sgemm_simd_path);
    // Which route sgemm takes for op(a) (m,k) @ op(b) (k,n), a stored contiguous (gemm.h).
    m.def(
        "sgemm_route",
        [](int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b) {
            int64_t mn = 0, mnk = 0;
            if (m < 0 || n < 0 || k < 0 || __builtin_mul_overflow(m, n, &mn) ||
                __builtin_mul_overflow(mn, k, &mnk))
                throw std::invalid_argument("sgemm_route: dimensions " + shape_str({m, n, k}) +
                                            " must be non-negative with a product below 2^63");
            return std::string(sgemm_route(trans_a, trans_b, m, n, k, trans_a ? m : k));
        },
        py::arg("m"), py::arg("n"), py::arg("k"), py::arg("trans_a") = false,
        py::arg("trans_b") = false);
    // Measured single-thread FMA ceiling (GFLOP/s) of the SIMD path in use (fma_peak.h).
    m.def(
        "measure_fma_peak_gflops",
        [](int64_t iterations) {
            py::gil_scoped_release release;
            return measure_fma_peak_gflops(iterations);
        },
        py::arg("iterations") = 20000000);
    // Measured single-thread vdpbf16ps ceiling (GFLOP/s); 0 without AVX512-BF16 (fma_peak.h).
    m.def(
        "measure_bf16_peak_gflops",
        [](int64_t iterations) {
            py::gil_scoped_release release;
            return measure_bf16_peak_gflops(iterations);
        },
        py::arg("iterations") = 20000000);
    // Single-thread GFLOP/s of the GEMM micro-kernel loop on packed, cache-resident operands
    // (gemm.h): the packed route's ceiling; in_l1 keeps every operand in L1.
    m.def(
        "measure_sgemm_ukernel_gflops",
        [](int64_t rounds, bool in_l1) {
            py::gil_scoped_release release;
            return measure_sgemm_ukernel_gflops(rounds, in_l1);
        },
        py::arg("rounds") = 200, py::kw_only(), py::arg("in_l1") = false);
    // c (M,N) = op(a) @ op(b) + beta * c with a and b rounded to bfloat16 and float32 sums
    // (gemm_bf16.h); naive: the triple-loop spec.
    m.def(
        "sgemm_bf16",
        [](py::array c, const py::array& a, const py::array& b, bool trans_a, bool trans_b,
           float beta, bool naive) {
            const float* pa = in_f32(a, "sgemm_bf16 a", 2);
            const float* pb = in_f32(b, "sgemm_bf16 b", 2);
            float* pc = out_f32(c, "sgemm_bf16 c", 2);
            const int64_t M = trans_a ? dim(a, 1) : dim(a, 0), K = trans_a ? dim(a, 0) : dim(a, 1);
            const int64_t Kb = trans_b ? dim(b, 1) : dim(b, 0), N = trans_b ? dim(b, 0) : dim(b, 1);
            if (K != Kb)
                throw std::invalid_argument("sgemm_bf16: inner dimensions differ: op(a) " +
                                            shape_str({M, K}) + ", op(b) " + shape_str({Kb, N}));
            expect_shape(c, "sgemm_bf16 c", {M, N});
            py::gil_scoped_release release;
            if (naive)
                sgemm_bf16_naive(trans_a, trans_b, M, N, K, pa, dim(a, 1), pb, dim(b, 1), beta,
                                 pc, N);
            else
                sgemm_bf16(trans_a, trans_b, M, N, K, pa, dim(a, 1), pb, dim(b, 1), beta, pc, N);
        },
        py::arg("c"), py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("beta") = 0.0f, py::arg("naive") = false);
    // c (M,N) int32 = a (M,K) uint8 @ b (K,N) int8 (+ c when accumulate), exact
    // (gemm_u8s8.h); naive: the triple-loop spec.
    m.def(
        "gemm_u8s8s32",
        [](py::array c, const py::array& a, const py::array& b, bool accumulate, bool naive) {
            check_buffer<uint8_t>(a, "gemm_u8s8s32 a", 2, false);
            check_buffer<int8_t>(b, "gemm_u8s8s32 b", 2, false);
            check_buffer<int32_t>(c, "gemm_u8s8s32 c", 2, true);
            const int64_t M = dim(a, 0), K = dim(a, 1), N = dim(b, 1);
            if (dim(b, 0) != K)
                throw std::invalid_argument("gemm_u8s8s32: inner dimensions differ: a " +
                                            shape_str(a) + ", b " + shape_str(b));
            expect_shape(c, "gemm_u8s8s32 c", {M, N});
            const auto* pa = static_cast<const uint8_t*>(a.data());
            const auto* pb = static_cast<const int8_t*>(b.data());
            auto* pc = static_cast<int32_t*>(c.mutable_data());
            py::gil_scoped_release release;
            if (naive)
                gemm_u8s8s32_naive(M, N, K, pa, K, pb, N, pc, N, accumulate);
            else
                gemm_u8s8s32(M, N, K, pa, K, pb, N, pc, N, accumulate);
        },
        py::arg("c"), py::arg("a"), py::arg("b"), py::arg("accumulate") = false,
        py::arg("naive") = false);
    m.def("gemm_u8s8_path", &gemm_u8s8_path);
    m.def("set_gemm_u8s8_path",
          [](const std::string& name) { return set_gemm_u8s8_path(name.c_str()); },
          py::arg("name"));
    m.def("sgemm_bf16_path", &sgemm_bf16_path);
    // Mixed-precision training's process-wide switch (gemm_bf16.h); returns the previous state.
    m.def(
        "set_bf16_products",
        [](bool on) {
            const bool previous = bf16_products();
            set_bf16_products(on);
            return previous;
        },
        py::arg("on"));
    m.def("bf16_products", &bf16_products);
    m.def("set_sgemm_bf16_path",
          [](const std::string& name) { return set_sgemm_bf16_path(name.c_str()); },
          py::arg("name"));
    // out = x rounded to bfloat16 (nearest even, subnormals to zero), as float32; same shape.
    m.def(
        "round_to_bf16",
        [](py::array out, const py::array& x) {
            const float* px = in_f32(x, "round_to_bf16 x");
            float* po = out_f32(out, "round_to_bf16 out");
            if (out.size() != x.size())
                throw std::invalid_argument("round_to_bf16: out " + shape_str(out) +
                                            " and x " + shape_str(x) + " differ in size");
            py::gil_scoped_release release;
            round_to_bf16(po, px, x.size());  // the vectorized loop mixed precision runs
        },
        py::arg("out"), py::arg("x"));
    m.def(
        "sgemm",
        [](py::array c, const py::array& a, const py::array& b, bool trans_a, bool trans_b,
           float alpha, float beta, bool naive, const py::object& bias, bool relu,
           bool single_thread) {
            const float* pa = in_f32(a, "sgemm a", 2);
            const float* pb = in_f32(b, "sgemm b", 2);
            float* pc = out_f32(c, "sgemm c", 2);
            int64_t M = trans_a ? dim(a, 1) : dim(a, 0), K = trans_a ? dim(a, 0) : dim(a, 1);
            int64_t Kb = trans_b ? dim(b, 1) : dim(b, 0), N = trans_b ? dim(b, 0) : dim(b, 1);
            if (K != Kb)
                throw std::invalid_argument("sgemm: inner dimensions differ: op(a) " +
                                            shape_str({M, K}) + ", op(b) " + shape_str({Kb, N}));
            expect_shape(c, "sgemm c", {M, N});
            const float* pbias = nullptr;
            if (!bias.is_none()) {
                const py::array bias_arr = bias.cast<py::array>();
                pbias = in_f32(bias_arr, "sgemm bias", 1);
                expect_shape(bias_arr, "sgemm bias", {N});
            }
            const bool epilogue = pbias != nullptr || relu;
            if (naive && (epilogue || single_thread))
                throw std::invalid_argument(
                    "sgemm: naive=True takes no bias, relu or single_thread");
            py::gil_scoped_release release;
            if (naive)
                sgemm_naive(trans_a, trans_b, M, N, K, alpha, pa, dim(a, 1), pb, dim(b, 1), beta,
                            pc, N);
            else if (epilogue)
                sgemm_bias_relu(trans_a, trans_b, M, N, K, alpha, pa, dim(a, 1), pb, dim(b, 1),
                                beta, pc, N, pbias, relu);
            else if (single_thread)
                sgemm_single_thread(trans_a, trans_b, M, N, K, alpha, pa, dim(a, 1), pb,
                                    dim(b, 1), beta, pc, N);
            else
                sgemm(trans_a, trans_b, M, N, K, alpha, pa, dim(a, 1), pb, dim(b, 1), beta, pc, N);
        },
        py::arg("c"), py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
        py::arg("naive") = false, py::arg("bias") = py::none(), py::arg("relu") = false,
        py::arg("single_thread") = false);
}

}  // namespace cnnfast::bind
