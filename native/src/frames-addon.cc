// Node binding of the frame codec (frames.c): one call seals or opens a batch of frames, so the
// per-chunk work never crosses into JavaScript. Synchronous on purpose: vtl calls it from its
// codec worker threads, which exist to do this work.
#include <napi.h>

#include <memory>

#include "frames.h"

namespace {

using Ctx = std::unique_ptr<vtl_frame_ctx, decltype(&vtl_frame_ctx_free)>;

template <typename T>
bool Typed(const Napi::Value& v, napi_typedarray_type type, T* out) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) return false;
  *out = v.As<T>();
  return true;
}

Napi::Value Fail(Napi::Env env, const char* message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

Ctx NewCtx(Napi::Env env, const Napi::Uint8Array& key) {
  Ctx ctx(key.ElementLength() == 32 ? vtl_frame_ctx_new(key.Data()) : nullptr, vtl_frame_ctx_free);
  if (!ctx) Napi::RangeError::New(env, "frame codec: bad key or out of memory").ThrowAsJavaScriptException();
  return ctx;
}

// sealFrames(key, containers: Uint32Array, seqs: Uint32Array, fingerprints: Uint8Array(16n),
//   data: Uint8Array, starts: Uint32Array, lengths: Uint32Array, out: Uint8Array,
//   bounds: Uint32Array(n + 1)): number
// Frame j goes to out[bounds[j] .. bounds[j + 1]); returns the bytes used. out needs room for
// the sum of (length + 48).
Napi::Value SealFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array key, fps, data, out;
  Napi::Uint32Array containers, seqs, starts, lengths, bounds;
  if (info.Length() < 9 || !Typed(info[0], napi_uint8_array, &key) || !Typed(info[1], napi_uint32_array, &containers) ||
      !Typed(info[2], napi_uint32_array, &seqs) || !Typed(info[3], napi_uint8_array, &fps) ||
      !Typed(info[4], napi_uint8_array, &data) || !Typed(info[5], napi_uint32_array, &starts) ||
      !Typed(info[6], napi_uint32_array, &lengths) || !Typed(info[7], napi_uint8_array, &out) ||
      !Typed(info[8], napi_uint32_array, &bounds)) {
    return Fail(env, "sealFrames: expected (key, containers, seqs, fingerprints, data, starts, lengths, out, bounds)");
  }
  size_t n = containers.ElementLength();
  if (seqs.ElementLength() != n || starts.ElementLength() != n || lengths.ElementLength() != n ||
      fps.ElementLength() != 16 * n || bounds.ElementLength() != n + 1) {
    return Fail(env, "sealFrames: array lengths disagree");
  }
  size_t need = 0;
  for (size_t j = 0; j < n; j++) {
    if (static_cast<size_t>(starts[j]) + lengths[j] > data.ElementLength() || lengths[j] > VTL_MAX_CHUNK) {
      return Fail(env, "sealFrames: a chunk lies outside data or is too large");
    }
    need += lengths[j] + VTL_FRAME_OVERHEAD;
  }
  if (need > out.ElementLength() || need > 0xFFFFFFFFu) return Fail(env, "sealFrames: out is too small");
  Ctx ctx = NewCtx(env, key);
  if (!ctx) return env.Undefined();
  size_t at = 0;
  bounds[0] = 0;
  for (size_t j = 0; j < n; j++) {
    size_t len = vtl_seal_frame(ctx.get(), containers[j], seqs[j], fps.Data() + 16 * j, data.Data() + starts[j],
                                lengths[j], out.Data() + at);
    if (!len) {
      Napi::Error::New(env, "sealFrames: OpenSSL failed to encrypt a frame").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    at += len;
    bounds[j + 1] = static_cast<uint32_t>(at);
  }
  return Napi::Number::New(env, static_cast<double>(at));
}

// openFrames(key, container: number, fingerprints: Uint8Array(16n), src: Uint8Array,
//   offsets: Uint32Array, lengths: Uint32Array, rawLengths: Uint32Array, out: Uint8Array,
//   outOffsets: Uint32Array): undefined | { index, reason }
// Frame j is src[offsets[j] ..][.. lengths[j]]; its chunk goes to out[outOffsets[j] ..]. Stops at
// the first frame that does not open and says which and why.
Napi::Value OpenFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array key, fps, src, out;
  Napi::Uint32Array offsets, lengths, raws, outOffsets;
  if (info.Length() < 9 || !Typed(info[0], napi_uint8_array, &key) || !info[1].IsNumber() ||
      !Typed(info[2], napi_uint8_array, &fps) || !Typed(info[3], napi_uint8_array, &src) ||
      !Typed(info[4], napi_uint32_array, &offsets) || !Typed(info[5], napi_uint32_array, &lengths) ||
      !Typed(info[6], napi_uint32_array, &raws) || !Typed(info[7], napi_uint8_array, &out) ||
      !Typed(info[8], napi_uint32_array, &outOffsets)) {
    return Fail(env, "openFrames: expected (key, container, fingerprints, src, offsets, lengths, rawLengths, out, outOffsets)");
  }
  size_t n = offsets.ElementLength();
  if (lengths.ElementLength() != n || raws.ElementLength() != n || outOffsets.ElementLength() != n ||
      fps.ElementLength() != 16 * n) {
    return Fail(env, "openFrames: array lengths disagree");
  }
  for (size_t j = 0; j < n; j++) {
    if (static_cast<size_t>(offsets[j]) + lengths[j] > src.ElementLength() ||
        static_cast<size_t>(outOffsets[j]) + raws[j] > out.ElementLength()) {
      return Fail(env, "openFrames: a frame or its chunk lies outside its buffer");
    }
  }
  Ctx ctx = NewCtx(env, key);
  if (!ctx) return env.Undefined();
  uint32_t container = info[1].As<Napi::Number>().Uint32Value();
  for (size_t j = 0; j < n; j++) {
    vtl_frame_status st = vtl_open_frame(ctx.get(), container, fps.Data() + 16 * j, src.Data() + offsets[j],
                                         lengths[j], out.Data() + outOffsets[j], raws[j]);
    if (st != VTL_FRAME_OK) {
      Napi::Object failure = Napi::Object::New(env);
      failure.Set("index", Napi::Number::New(env, static_cast<double>(j)));
      failure.Set("reason", Napi::String::New(env, vtl_frame_reason(st)));
      return failure;
    }
  }
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  const char* err = vtl_frames_init();
  exports.Set("unavailable", err ? Napi::Value(Napi::String::New(env, err)) : env.Null());
  exports.Set("sealFrames", Napi::Function::New(env, SealFrames));
  exports.Set("openFrames", Napi::Function::New(env, OpenFrames));
  return exports;
}

}  // namespace

NODE_API_MODULE(vtl_frames, Init)
