// Node binding of the FastCDC cut-point scanner (fastcdc.c): one call per input buffer, so the
// per-chunk work never crosses into JavaScript.
#include <napi.h>

#include <cstring>
#include <vector>

#include "fastcdc.h"

namespace {

class Chunker : public Napi::ObjectWrap<Chunker> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Chunker", {InstanceMethod<&Chunker::CutPoints>("cutPoints")});
  }

  // new Chunker(gear: Uint32Array(256), min, avg, max)
  explicit Chunker(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Chunker>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsNumber() ||
        !info[3].IsNumber()) {
      Napi::TypeError::New(env, "expected (gear: Uint32Array, min, avg, max)").ThrowAsJavaScriptException();
      return;
    }
    Napi::TypedArray gear = info[0].As<Napi::TypedArray>();
    if (gear.TypedArrayType() != napi_uint32_array || gear.ElementLength() != 256) {
      Napi::TypeError::New(env, "gear must be a Uint32Array of 256 entries").ThrowAsJavaScriptException();
      return;
    }
    uint32_t params[3];
    for (int k = 0; k < 3; k++) {
      double v = info[k + 1].As<Napi::Number>().DoubleValue();
      if (!(v >= 0 && v <= 4294967295.0) || v != static_cast<double>(static_cast<uint32_t>(v))) {
        Napi::RangeError::New(env, "min, avg and max must be unsigned 32-bit integers").ThrowAsJavaScriptException();
        return;
      }
      params[k] = static_cast<uint32_t>(v);
    }
    const uint32_t* table = gear.As<Napi::Uint32Array>().Data();
    if (const char* err = vtl_cdc_init(&cdc_, params[0], params[1], params[2], table)) {
      Napi::RangeError::New(env, err).ThrowAsJavaScriptException();
    }
  }

 private:
  // cutPoints(buf: Uint8Array, final: boolean): Uint32Array
  Napi::Value CutPoints(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsBoolean()) {
      Napi::TypeError::New(env, "expected (buf: Uint8Array, final: boolean)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::TypedArray arr = info[0].As<Napi::TypedArray>();
    if (arr.TypedArrayType() != napi_uint8_array) {
      Napi::TypeError::New(env, "buf must be a Uint8Array").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array buf = arr.As<Napi::Uint8Array>();
    size_t len = buf.ElementLength();
    if (len > 0xFFFFFFFFu) {
      Napi::RangeError::New(env, "buf must be shorter than 4 GiB").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    // Scratch space is kept between calls; the result is copied out at its exact size.
    size_t cap = vtl_cdc_max_cuts(&cdc_, len);
    if (scratch_.size() < cap) scratch_.resize(cap);
    size_t n = vtl_cdc_cut_points(&cdc_, buf.Data(), len, info[1].As<Napi::Boolean>().Value(), scratch_.data());
    Napi::Uint32Array out = Napi::Uint32Array::New(env, n);
    if (n) std::memcpy(out.Data(), scratch_.data(), n * sizeof(uint32_t));
    return out;
  }

  vtl_cdc cdc_{};
  std::vector<uint32_t> scratch_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Chunker", Chunker::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(vtl_chunker, Init)
