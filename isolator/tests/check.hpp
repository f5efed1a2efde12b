// The unit tests' small check framework, shared by unit_tests.cpp and
// isolator_tests.cpp: a failed CHECK prints where and what, and counts; the
// run fails if any did. Thread-safe, for checks made on helper threads.
#ifndef LAZYROOT_TESTS_CHECK_HPP
#define LAZYROOT_TESTS_CHECK_HPP

#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

inline std::atomic<int> g_checks{0};
inline std::atomic<int> g_failures{0};

inline void record(bool ok, const char* file, int line, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
  }
}

inline std::string show(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F && c != '"' && c != '\\') {
      out += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    }
  }
  return out + "\"";
}
inline std::string show(unsigned long long v) { return std::to_string(v); }
inline std::string show(int v) { return std::to_string(v); }
inline std::string show(unsigned v) { return std::to_string(v); }
inline std::string show(unsigned long v) { return std::to_string(v); }
inline std::string show(bool v) { return v ? "true" : "false"; }
inline std::string show(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i == 0 ? "" : ", ") + show(v[i]);
  return out + "]";
}

#define CHECK(cond) record((cond), __FILE__, __LINE__, #cond)
#define CHECK_EQ(a, b)                                                                        \
  do {                                                                                        \
    auto va_ = (a);                                                                           \
    auto vb_ = (b);                                                                           \
    record(va_ == vb_, __FILE__, __LINE__, std::string(#a " == " #b ": ") + show(va_) + " vs " + show(vb_)); \
  } while (0)
#define CHECK_CONTAINS(haystack, needle)                                                       \
  record(std::string(haystack).find(needle) != std::string::npos, __FILE__, __LINE__,          \
         std::string(#haystack " contains \"") + (needle) + "\": got " + show(std::string(haystack)))

struct TestCase {
  const char* name;
  void (*fn)();
};

// The tests of isolator_tests.cpp, run after unit_tests.cpp's own.
std::vector<TestCase> isolator_tests();

#endif  // LAZYROOT_TESTS_CHECK_HPP
