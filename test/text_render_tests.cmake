# The overlay legend's text renderer (apps/text_renderer.h): its own executable, since it needs neither
# LibTorch nor fixtures, only the fonts scripts/setup.sh installs (TextRenderer::kFontPackages). Included
# from test/CMakeLists.txt.
if(TARGET groupvit_text_render)
  find_package(Threads REQUIRED)
  add_executable(groupvit_text_render_tests main.cpp test_text_renderer.cpp)
  target_link_libraries(groupvit_text_render_tests PRIVATE groupvit_text_render Catch2::Catch2 Threads::Threads)
  target_compile_options(groupvit_text_render_tests PRIVATE ${GROUPVIT_WARNINGS})
  add_test(NAME unit.text_render COMMAND groupvit_text_render_tests "[text_render]")
  # An empty GROUPVIT_FONT is ignored: a developer's own font must not change what the suite compares.
  set_tests_properties(unit.text_render PROPERTIES ENVIRONMENT "GROUPVIT_FONT=" TIMEOUT 120)
endif()
