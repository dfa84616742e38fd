# node-gyp build of the same CPU sources as CMakeLists.txt, for machines without CMake.
# CUDA is CMake-only. The per-ISA kernel files get their -m flags from separate static targets.
{
  "variables": {
    "supcon_version%": "<!(node -p \"require('./package.json').version\")"
  },
  "target_defaults": {
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++14", "-std=gnu++17"],
    "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-frtti", "-fPIC"],
    "cflags!": ["-fno-exceptions"],
    "include_dirs": ["native/include", "native/core"],
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "OTHER_CPLUSPLUSFLAGS": ["-O3"]
    },
    "conditions": [
      ["target_arch=='x64'", { "defines": ["SUPCON_HAVE_X86_KERNELS=1"] }]
    ]
  },
  "targets": [
    {
      "target_name": "supcon_native",
      "sources": [
        "<!@(node -p \"require('fs').readdirSync('native/napi').filter(f => f.endsWith('.cpp')).map(f => 'native/napi/' + f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/core').filter(f => f.endsWith('.cpp') && !f.startsWith('isa_')).map(f => 'native/core/' + f).join(' ')\")",
        "native/core/isa_generic.cpp"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS", "SUPCON_VERSION=\"<(supcon_version)\""],
      "conditions": [
        ["target_arch=='x64'", { "dependencies": ["supcon_isa_avx2", "supcon_isa_avx512"] }]
      ]
    },
    {
      "target_name": "supcon_isa_avx2",
      "type": "static_library",
      "sources": ["native/core/isa_avx2.cpp"],
      "cflags_cc": ["-mavx2", "-mfma"],
      "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-O3", "-mavx2", "-mfma"] }
    },
    {
      "target_name": "supcon_isa_avx512",
      "type": "static_library",
      "sources": ["native/core/isa_avx512.cpp"],
      "cflags_cc": ["-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx512bw", "-mfma", "-mprefer-vector-width=512"],
      "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-O3", "-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx512bw", "-mfma"] }
    }
  ]
}
