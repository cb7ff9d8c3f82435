#pragma once
// Internal helpers shared by the *_avx512.cpp files (include only from them: they are the files
// compiled with AVX-512 flags).
#include <immintrin.h>

#include <cstdint>

namespace cnnfast {

// The first n lanes of a 16-lane vector (all for n >= 16, none for n <= 0): the mask of a
// vector's worth of a row whose last n values remain.
inline __mmask16 lanes(int64_t n) {
    return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

}  // namespace cnnfast
