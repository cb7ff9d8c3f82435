#pragma once
#include <atomic>
#include <cstring>
// Which SIMD instruction sets kernels may use: the CPU's, limited to what this build compiled
// and capped by the environment variable CNNFAST_SIMD=avx512|avx2|scalar (a request above what
// the CPU supports falls back to the best available; an unknown value is ignored). Every kernel
// family picks its micro-kernels from simd_level(), so one variable steers them all.

namespace cnnfast {

enum class SimdLevel : int { scalar = 0, avx2 = 1, avx512 = 2 };

// AVX-512 F/BW/VL/DQ with FMA, as the *_avx512.cpp files are compiled for (false when not built).
bool cpu_has_avx512();
// AVX-512 as above plus AVX512-BF16 (vdpbf16ps), as *_avx512bf16.cpp are compiled for (false
// when not built).
bool cpu_has_avx512_bf16();
// AVX-512 plus AVX512-VNNI (vpdpbusd), as *_avx512vnni.cpp are compiled for.
bool cpu_has_avx512_vnni();
// AVX-512 BF16 as above plus AMX (tiles, AMX-BF16 and AMX-INT8), as *_amx.cpp are compiled for,
// with the kernel's permission to use the tiles granted to this process (Linux asks each process
// to request it; false when not built, not granted, or capped below avx512 by CNNFAST_SIMD).
bool cpu_has_amx();
// AVX2 with FMA (false when not built).
bool cpu_has_avx2();
// The widest level both the CPU and the CNNFAST_SIMD cap allow; computed once.
SimdLevel simd_level();

// The one run-time dispatch idiom of every kernel family. A family gathers its ISA-specific entry
// points in a table struct. Each ISA-specific file (*_avx512.cpp, *_avx2.cpp, compiled with that
// ISA's flags) defines a getter `const Table* <family>_<isa>()` that returns its table, with the
// ISA code under the one guard `#if defined(CNNFAST_BUILD_<ISA>)` and a getter returning null in
// the `#else` branch, so a build without the ISA still links. The family hands the getters'
// tables to a SimdTables, which on first use picks the widest one simd_level() allows (CPU
// features capped by CNNFAST_SIMD); the baseline table may be null for families that only have
// ISA code (then current() is null where that ISA is missing). Tests switch to any path the CPU
// runs by name ("auto", "baseline", "avx2", "avx512").
// (Loop headers compiled once per ISA - activation_loops.h, pool2d_loops.h - ask the compiler,
// __AVX512F__ / __AVX2__, which ISA the including file is compiled for: that is not a guard.)
template <class Table>
class SimdTables {
public:
    SimdTables(const Table* baseline, const Table* avx2, const Table* avx512)
        : baseline_(baseline), avx2_(avx2), avx512_(avx512) {}

    // The table in use: chosen on first use, or by select(); null when the family has no table
    // for this CPU.
    const Table* current() {
        const Table* t = chosen_.load(std::memory_order_acquire);
        if (!t) {
            t = automatic();  // stays null, and cheap to ask again, without a table for this CPU
            chosen_.store(t, std::memory_order_release);
        }
        return t;
    }

    // A table beside the three slots (a second one for a level: AMX beside AVX512-BF16) in use
    // from now on; false (and no change) for null.
    bool select(const Table* t) {
        if (!t) return false;
        chosen_.store(t, std::memory_order_release);
        return true;
    }

    // False (and no change) for an unknown name or a path this build or CPU lacks.
    bool select(const char* name) {
        const Table* t = nullptr;
        if (std::strcmp(name, "auto") == 0) t = automatic();
        if (std::strcmp(name, "baseline") == 0) t = baseline_;
        if (std::strcmp(name, "avx2") == 0 && cpu_has_avx2()) t = avx2_;
        if (std::strcmp(name, "avx512") == 0 && cpu_has_avx512()) t = avx512_;
        if (!t) return false;
        chosen_.store(t, std::memory_order_release);
        return true;
    }

private:
    const Table* automatic() const {
        const SimdLevel level = simd_level();
        if (level == SimdLevel::avx512 && avx512_) return avx512_;
        if (level >= SimdLevel::avx2 && avx2_) return avx2_;
        return baseline_;
    }

    const Table* baseline_;
    const Table* avx2_;
    const Table* avx512_;
    std::atomic<const Table*> chosen_{nullptr};
};

}  // namespace cnnfast
