// A small JSON reader for the C++ tests' shared fixtures (test/fixtures/*.json): objects,
// arrays, strings (with the common escapes), numbers, true/false/null. Not for untrusted input:
// a malformed file throws std::runtime_error with the offset.
#pragma once
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace supcon_test {

struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Json> array;
  std::map<std::string, Json> object;

  bool isNull() const { return type == Type::kNull; }
  bool has(const std::string& key) const { return type == Type::kObject && object.count(key) > 0; }
  const Json& operator[](const std::string& key) const {
    static const Json none;
    auto it = object.find(key);
    return it == object.end() ? none : it->second;
  }
  const Json& operator[](size_t i) const { return array.at(i); }
  size_t size() const { return type == Type::kArray ? array.size() : object.size(); }
};

class JsonParser {
 public:
  explicit JsonParser(std::string text) : s_(std::move(text)) {}
  Json parse() {
    Json v = value();
    skip();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const char* what) const {
    throw std::runtime_error(std::string("JSON: ") + what + " at offset " + std::to_string(i_));
  }
  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool take(char c) {
    skip();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!take(c)) fail("unexpected character");
  }
  bool word(const char* w) {
    const size_t n = std::char_traits<char>::length(w);
    if (s_.compare(i_, n, w) == 0) {
      i_ += n;
      return true;
    }
    return false;
  }
  std::string str() {
    expect('"');
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c == '\\') {
        if (i_ >= s_.size()) fail("bad escape");
        const char e = s_[i_++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'u': {  // the fixtures hold ASCII; keep the escape's low byte
            if (i_ + 4 > s_.size()) fail("bad escape");
            out += static_cast<char>(std::strtol(s_.substr(i_, 4).c_str(), nullptr, 16) & 0x7f);
            i_ += 4;
            break;
          }
          default: out += e;
        }
      } else {
        out += c;
      }
    }
    expect('"');
    return out;
  }
  Json value() {
    skip();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    const char c = s_[i_];
    if (c == '{') {
      ++i_;
      v.type = Json::Type::kObject;
      if (take('}')) return v;
      do {
        skip();
        std::string key = str();
        expect(':');
        v.object[key] = value();
      } while (take(','));
      expect('}');
    } else if (c == '[') {
      ++i_;
      v.type = Json::Type::kArray;
      if (take(']')) return v;
      do v.array.push_back(value());
      while (take(','));
      expect(']');
    } else if (c == '"') {
      v.type = Json::Type::kString;
      v.string = str();
    } else if (word("true")) {
      v.type = Json::Type::kBool;
      v.boolean = true;
    } else if (word("false")) {
      v.type = Json::Type::kBool;
    } else if (word("null")) {
      v.type = Json::Type::kNull;
    } else {
      const char* begin = s_.c_str() + i_;
      char* end = nullptr;
      v.type = Json::Type::kNumber;
      v.number = std::strtod(begin, &end);
      if (end == begin) fail("bad value");
      i_ += static_cast<size_t>(end - begin);
    }
    return v;
  }

  std::string s_;
  size_t i_ = 0;
};

inline Json readJsonFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return JsonParser(ss.str()).parse();
}

}  // namespace supcon_test
