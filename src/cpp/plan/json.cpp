#include "json.h"

#include <cmath>
#include <cstdlib>

namespace cnnfast::json {

namespace {

constexpr int kMaxDepth = 64;

struct Parser {
    const std::string& s;
    size_t i = 0;

    [[noreturn]] void fail(const std::string& why) const {
        throw std::runtime_error("invalid JSON at byte " + std::to_string(i) + ": " + why);
    }
    void skip_ws() {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
    }
    bool consume(char c) {
        skip_ws();
        if (i < s.size() && s[i] == c) {
            ++i;
            return true;
        }
        return false;
    }
    void expect(char c) {
        if (!consume(c)) fail(std::string("expected '") + c + "'");
    }
    bool literal(const char* word) {
        size_t n = std::char_traits<char>::length(word);
        if (s.compare(i, n, word) == 0) {
            i += n;
            return true;
        }
        return false;
    }

    static void append_utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    uint32_t hex4() {
        if (i + 4 > s.size()) fail("truncated \\u escape");
        uint32_t v = 0;
        for (int k = 0; k < 4; ++k) {
            char c = s[i++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= c - '0';
            else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
            else fail("bad \\u escape");
        }
        return v;
    }

    std::string string() {
        skip_ws();
        if (i >= s.size() || s[i] != '"') fail("expected a string");
        ++i;
        std::string out;
        while (true) {
            if (i >= s.size()) fail("unterminated string");
            char c = s[i++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
            if (c != '\\') {
                out += c;
                continue;
            }
            if (i >= s.size()) fail("unterminated escape");
            char e = s[i++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00) {  // surrogate pair
                        if (!(literal("\\u"))) fail("lone surrogate");
                        uint32_t lo = hex4();
                        if (lo < 0xDC00 || lo >= 0xE000) fail("bad surrogate pair");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else if (cp >= 0xDC00 && cp < 0xE000) {
                        fail("lone surrogate");
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: fail("bad escape");
            }
        }
    }

    double number() {
        size_t start = i;
        if (i < s.size() && s[i] == '-') ++i;
        if (i >= s.size() || !(s[i] >= '0' && s[i] <= '9')) fail("bad number");
        while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == 'e' ||
                                s[i] == 'E' || s[i] == '+' || s[i] == '-'))
            ++i;
        std::string token = s.substr(start, i - start);
        char* end = nullptr;
        double v = std::strtod(token.c_str(), &end);
        if (end != token.c_str() + token.size() || !std::isfinite(v)) fail("bad number");
        return v;
    }

    Value value(int depth) {
        if (depth > kMaxDepth) fail("nesting too deep");
        skip_ws();
        if (i >= s.size()) fail("unexpected end");
        Value v;
        char c = s[i];
        if (c == '{') {
            ++i;
            v.kind = Value::Kind::Object;
            if (consume('}')) return v;
            do {
                std::string key = string();
                expect(':');
                v.object.emplace_back(std::move(key), value(depth + 1));
            } while (consume(','));
            expect('}');
        } else if (c == '[') {
            ++i;
            v.kind = Value::Kind::Array;
            if (consume(']')) return v;
            do {
                v.array.push_back(value(depth + 1));
            } while (consume(','));
            expect(']');
        } else if (c == '"') {
            v.kind = Value::Kind::String;
            v.string = string();
        } else if (literal("true")) {
            v.kind = Value::Kind::Bool;
            v.boolean = true;
        } else if (literal("false")) {
            v.kind = Value::Kind::Bool;
        } else if (literal("null")) {
            v.kind = Value::Kind::Null;
        } else {
            v.kind = Value::Kind::Number;
            v.number = number();
        }
        return v;
    }
};

}  // namespace

const Value* Value::find(const std::string& key) const {
    if (kind != Kind::Object) return nullptr;
    for (const auto& kv : object)
        if (kv.first == key) return &kv.second;
    return nullptr;
}

const Value& Value::at(const std::string& key, const char* what) const {
    const Value* v = find(key);
    if (!v) throw std::runtime_error(std::string(what) + ": missing \"" + key + "\"");
    return *v;
}

const std::string& Value::as_string(const char* what) const {
    if (kind != Kind::String) throw std::runtime_error(std::string(what) + ": expected a string");
    return string;
}

double Value::as_number(const char* what) const {
    if (kind != Kind::Number) throw std::runtime_error(std::string(what) + ": expected a number");
    return number;
}

int64_t Value::as_int(const char* what, int64_t lo, int64_t hi) const {
    double v = as_number(what);
    if (v != std::floor(v) || v < static_cast<double>(lo) || v > static_cast<double>(hi))
        throw std::runtime_error(std::string(what) + ": expected an integer in [" +
                                 std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<int64_t>(v);
}

bool Value::as_bool(const char* what) const {
    if (kind != Kind::Bool) throw std::runtime_error(std::string(what) + ": expected true/false");
    return boolean;
}

Value parse(const std::string& text) {
    Parser p{text};
    Value v = p.value(0);
    p.skip_ws();
    if (p.i != text.size()) p.fail("trailing characters");
    return v;
}

}  // namespace cnnfast::json
