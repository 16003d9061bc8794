// Node binding of streaming XXH3-128, the tape-file checksum (DESIGN.md section 2), from the
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
  if (!xxh.create || !xxh.destroy || !xxh.reset || !xxh.update || !xxh.digest) {
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Load();
  exports.Set("Xxh3", Xxh3::Define(env));
  exports.Set("unavailable", unavailable ? Napi::Value(Napi::String::New(env, unavailable)) : env.Null());
  return exports;
}

}  // namespace

NODE_API_MODULE(vtl_checksum, Init)
