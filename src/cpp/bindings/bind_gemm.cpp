#include "bind_util.h"
#include "gemm.h"

namespace cnnfast::bind {

// c (M,N) = alpha * op(a) @ op(b) + beta * c, written in place.
void bind_gemm(py::module_& m) {
    m.def("sgemm_simd_path", &sgemm_simd_path);
    m.def(
        "sgemm",
        [](py::array c, const py::array& a, const py::array& b, bool trans_a, bool trans_b,
           float alpha, float beta, bool naive) {
            const float* pa = in_f32(a, "sgemm a", 2);
            const float* pb = in_f32(b, "sgemm b", 2);
            float* pc = out_f32(c, "sgemm c", 2);
            int64_t M = trans_a ? dim(a, 1) : dim(a, 0), K = trans_a ? dim(a, 0) : dim(a, 1);
            int64_t Kb = trans_b ? dim(b, 1) : dim(b, 0), N = trans_b ? dim(b, 0) : dim(b, 1);
            if (K != Kb)
                throw std::invalid_argument("sgemm: inner dimensions differ: op(a) " +
                                            shape_str({M, K}) + ", op(b) " + shape_str({Kb, N}));
            expect_shape(c, "sgemm c", {M, N});
            auto fn = naive ? &sgemm_naive : &sgemm;
            py::gil_scoped_release release;
            fn(trans_a, trans_b, M, N, K, alpha, pa, dim(a, 1), pb, dim(b, 1), beta, pc, N);
        },
        py::arg("c"), py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
        py::arg("naive") = false);
}

}  // namespace cnnfast::bind
