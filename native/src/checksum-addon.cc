// Node binding of streaming XXH3-128, the tape-file checksum (DESIGN.md section 2), and of the
// chunk fingerprints (XXH3-128 keyed with the store's secret, a batch per call), from the
// system's libxxhash. It is loaded at run time, as frames.c loads liblz4, so building needs no
// xxhash headers; vtl falls back to hash-wasm where the library is missing.
//
// Why: hash-wasm copies every record into WebAssembly memory and hashes it there, about 50 ms
// of the server's event loop per 277 MB read through rmt; the library hashes the record where
// it lies, with the widest vector unit the CPU has (its dispatch entry points).
#include <dlfcn.h>
#include <napi.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>

namespace {

// XXH128_hash_t: two 64-bit halves, returned in registers like any 16-byte struct of integers.
struct Hash128 {
  uint64_t low64;
  uint64_t high64;
};

// The few libxxhash entry points vtl uses; stable API since xxHash 0.8.0.
struct {
  void* (*create)();
  int (*destroy)(void*);
  int (*reset)(void*);
  int (*update)(void*, const void*, size_t);
  Hash128 (*digest)(const void*);
  Hash128 (*with_secret)(const void*, size_t, const void*, size_t);
} xxh;
const char* unavailable = "not loaded";

void Load() {
  void* lib = dlopen("libxxhash.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    unavailable = "libxxhash.so.0 not found (Debian: apt-get install libxxhash0)";
    return;
  }
  *reinterpret_cast<void**>(&xxh.create) = dlsym(lib, "XXH3_createState");
  *reinterpret_cast<void**>(&xxh.destroy) = dlsym(lib, "XXH3_freeState");
  *reinterpret_cast<void**>(&xxh.reset) = dlsym(lib, "XXH3_128bits_reset");
  // The dispatching update picks AVX2/AVX-512 at run time where the library was built with it.
  *reinterpret_cast<void**>(&xxh.update) = dlsym(lib, "XXH3_128bits_update_dispatch");
  if (!xxh.update) *reinterpret_cast<void**>(&xxh.update) = dlsym(lib, "XXH3_128bits_update");
  *reinterpret_cast<void**>(&xxh.digest) = dlsym(lib, "XXH3_128bits_digest");
  *reinterpret_cast<void**>(&xxh.with_secret) = dlsym(lib, "XXH3_128bits_withSecret_dispatch");
  if (!xxh.with_secret) *reinterpret_cast<void**>(&xxh.with_secret) = dlsym(lib, "XXH3_128bits_withSecret");
  if (!xxh.create || !xxh.destroy || !xxh.reset || !xxh.update || !xxh.digest || !xxh.with_secret) {
    unavailable = "libxxhash.so.0 lacks the XXH3 streaming functions (xxHash 0.8 or later is needed)";
    return;
  }
  unavailable = nullptr;
}

class Xxh3 : public Napi::ObjectWrap<Xxh3> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Xxh3", {InstanceMethod<&Xxh3::Update>("update"), InstanceMethod<&Xxh3::Digest>("digest")});
  }

  explicit Xxh3(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Xxh3>(info) {
    if (unavailable) {
      Napi::Error::New(info.Env(), unavailable).ThrowAsJavaScriptException();
      return;
    }
    state_ = xxh.create();
    if (!state_ || xxh.reset(state_) != 0) Napi::Error::New(info.Env(), "xxh3: out of memory").ThrowAsJavaScriptException();
  }

  ~Xxh3() override {
    if (state_) xxh.destroy(state_);
  }

 private:
  // update(data: Uint8Array): undefined
  Napi::Value Update(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      Napi::TypeError::New(env, "update: expected a Uint8Array").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
    if (state_ && data.ElementLength() > 0) xxh.update(state_, data.Data(), data.ElementLength());
    return env.Undefined();
  }

  // digest(): string, 32 hex digits (high half first); the stream goes on.
  Napi::Value Digest(const Napi::CallbackInfo& info) {
    if (!state_) return info.Env().Undefined();
    Hash128 h = xxh.digest(state_);
    char hex[33];
    snprintf(hex, sizeof hex, "%016" PRIx64 "%016" PRIx64, h.high64, h.low64);
    return Napi::String::New(info.Env(), hex);
  }

  void* state_ = nullptr;
};

bool IsBytes(const Napi::Value& v) {
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array;
}

void PutBigEndian(uint8_t* out, uint64_t v) {
  for (int k = 7; k >= 0; k--, v >>= 8) out[k] = static_cast<uint8_t>(v);
}

// fingerprints(data: Uint8Array, cuts: Uint32Array, secret: Uint8Array, out: Uint8Array): undefined
// Chunk i is data[cuts[i-1] (0 for the first) .. cuts[i]); its XXH3-128 keyed with the secret
// goes to out[16i..16i+16), high half first, both big endian: the form the store keeps. One
// call per batch, so the per-chunk work never crosses into JavaScript.
Napi::Value Fingerprints(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (unavailable) {
    Napi::Error::New(env, unavailable).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info.Length() < 4 || !IsBytes(info[0]) || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array || !IsBytes(info[2]) || !IsBytes(info[3])) {
    Napi::TypeError::New(env, "expected (data: Uint8Array, cuts: Uint32Array, secret: Uint8Array, out: Uint8Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
  Napi::Uint32Array cuts = info[1].As<Napi::Uint32Array>();
  Napi::Uint8Array secret = info[2].As<Napi::Uint8Array>();
  Napi::Uint8Array out = info[3].As<Napi::Uint8Array>();
  size_t n = cuts.ElementLength();
  // xxHash aborts the process on a secret under 136 bytes: refuse it here.
  if (secret.ElementLength() < 136) {
    Napi::RangeError::New(env, "the fingerprint secret must be at least 136 bytes").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (out.ElementLength() < n * 16) {
    Napi::RangeError::New(env, "out is too small for 16 bytes per chunk").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const uint32_t* c = cuts.Data();
  for (size_t i = 0, start = 0; i < n; start = c[i++]) {
    if (c[i] < start || c[i] > data.ElementLength()) {
      Napi::RangeError::New(env, "cut points must rise and stay within data").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  const uint8_t* d = data.Data();
  uint8_t* o = out.Data();
  for (size_t i = 0, start = 0; i < n; start = c[i++]) {
    Hash128 h = xxh.with_secret(d + start, c[i] - start, secret.Data(), secret.ElementLength());
    PutBigEndian(o + 16 * i, h.high64);
    PutBigEndian(o + 16 * i + 8, h.low64);
  }
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Load();
  exports.Set("Xxh3", Xxh3::Define(env));
  exports.Set("fingerprints", Napi::Function::New(env, Fingerprints, "fingerprints"));
  exports.Set("unavailable", unavailable ? Napi::Value(Napi::String::New(env, unavailable)) : env.Null());
  return exports;
}

}  // namespace

NODE_API_MODULE(vtl_checksum, Init)
