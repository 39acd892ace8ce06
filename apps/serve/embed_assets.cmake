# Writes serve_assets.h: the demo page and openapi.json as C++ string constants (raw string
# literals with a delimiter neither file holds; checked here).
file(READ ${PAGE} page)
file(READ ${OPENAPI} openapi)
foreach(text page openapi)
  string(FIND "${${text}}" ")groupvit_asset\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${text} holds the raw string delimiter )groupvit_asset\"")
  endif()
endforeach()
file(WRITE ${OUT}.tmp "// Generated from apps/serve/page/index.html and apps/serve/openapi.json; do not edit.\n#pragma once\n"
  "inline constexpr const char* kServePage = R\"groupvit_asset(${page})groupvit_asset\";\n"
  "inline constexpr const char* kServeOpenApi = R\"groupvit_asset(${openapi})groupvit_asset\";\n")
file(RENAME ${OUT}.tmp ${OUT})
