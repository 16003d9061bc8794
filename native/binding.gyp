{
  "targets": [
    {
      "target_name": "vtl_chunker",
      "sources": ["src/fastcdc.c", "src/addon.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api"],
      "defines": ["NAPI_VERSION=8"],
      "cflags!": ["-O2", "-O0"],
      "cflags_cc!": ["-O2", "-O0"],
      "cflags": ["-O3", "-Wall", "-Wextra"],
      "cflags_cc": ["-O3", "-Wall"],
      "xcode_settings": { "GCC_OPTIMIZATION_LEVEL": "3" },
      "msvs_settings": { "VCCLCompilerTool": { "Optimization": 2 } }
    },
    {
      "target_name": "vtl_frames",
      "sources": ["src/frames.c", "src/frames-addon.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-ldl"],
      "cflags!": ["-O2", "-O0"],
      "cflags_cc!": ["-O2", "-O0"],
      "cflags": ["-O3", "-Wall", "-Wextra"],
      "cflags_cc": ["-O3", "-Wall"]
    },
    {
      "target_name": "vtl_checksum",
      "sources": ["src/checksum-addon.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-ldl"],
      "cflags_cc!": ["-O2", "-O0"],
      "cflags_cc": ["-O3", "-Wall"]
    },
    {
      "target_name": "vtl-rmt-bridge",
      "type": "executable",
      "sources": ["src/rmt-bridge.c"],
      "libraries": ["-lpthread"],
      "cflags!": ["-O2", "-O0"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-pthread"],
      "ldflags": ["-pthread"]
    }
  ]
}
