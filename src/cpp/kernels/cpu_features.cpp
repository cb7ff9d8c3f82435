#include "cpu_features.h"

#include <cstdlib>
#include <cstring>

#if defined(CNNFAST_BUILD_AMX) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace cnnfast {

bool cpu_has_avx512() {
#if defined(CNNFAST_BUILD_AVX512) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

bool cpu_has_avx512_bf16() {
#if defined(CNNFAST_BUILD_AVX512BF16) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

bool cpu_has_avx512_vnni() {
#if defined(CNNFAST_BUILD_AVX512VNNI) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
}

bool cpu_has_amx() {
#if defined(CNNFAST_BUILD_AMX) && defined(__linux__) && defined(__x86_64__)
    static const bool granted = [] {
        __builtin_cpu_init();
        if (!cpu_has_avx512_bf16() || !__builtin_cpu_supports("amx-tile") ||
            !__builtin_cpu_supports("amx-bf16") || !__builtin_cpu_supports("amx-int8"))
            return false;
        // The tile data is 8 KiB of state the kernel saves only for processes that ask:
        // arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); without it the first tile
        // instruction faults. Granted once, for every thread of the process.
        constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
        return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
    }();
    return granted && simd_level() == SimdLevel::avx512;
#else
    return false;
#endif
}

bool cpu_has_avx2() {
#if defined(CNNFAST_BUILD_AVX2) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

SimdLevel simd_level() {
    static const SimdLevel level = [] {
        SimdLevel cap = SimdLevel::avx512;
        if (const char* env = std::getenv("CNNFAST_SIMD")) {
            if (std::strcmp(env, "avx2") == 0) cap = SimdLevel::avx2;
            if (std::strcmp(env, "scalar") == 0) cap = SimdLevel::scalar;
        }
        if (cap >= SimdLevel::avx512 && cpu_has_avx512()) return SimdLevel::avx512;
        if (cap >= SimdLevel::avx2 && cpu_has_avx2()) return SimdLevel::avx2;
        return SimdLevel::scalar;
    }();
    return level;
}

}  // namespace cnnfast
