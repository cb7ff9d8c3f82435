#pragma once
// A small, strict JSON reader for model configs and model-file headers (RFC 8259 subset: no duplicate-key
// semantics, numbers as double). Hostile input throws std::runtime_error; nesting depth and
// sizes are bounded so a crafted header cannot exhaust the stack.
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace cnnfast::json {

struct Value {
    enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
    bool boolean = false;
    double number = 0.0;
    std::string string;
    std::vector<Value> array;
    std::vector<std::pair<std::string, Value>> object;  // in file order

    bool is_object() const { return kind == Kind::Object; }
    bool is_array() const { return kind == Kind::Array; }
    bool is_string() const { return kind == Kind::String; }
    bool is_number() const { return kind == Kind::Number; }
    // Member lookup; nullptr when absent or not an object.
    const Value* find(const std::string& key) const;
    // Checked accessors: throw std::runtime_error naming `what` on a type mismatch.
    const Value& at(const std::string& key, const char* what) const;
    const std::string& as_string(const char* what) const;
    double as_number(const char* what) const;
    // An integral number in [lo, hi].
    int64_t as_int(const char* what, int64_t lo, int64_t hi) const;
    bool as_bool(const char* what) const;
};

// Parses the whole text (trailing non-space is an error).
Value parse(const std::string& text);

}  // namespace cnnfast::json
