# The WebDataset shard reader's suite (test/test_webdataset.cpp): its own executable, since the reader
# needs neither LibTorch nor OpenCV. Included from test/CMakeLists.txt after FIXTURES, PY and TEST_ENV.
if(TARGET groupvit_webdataset)
  # SHA-256 of the members, as expected.json has them (nlohmann_json is found by the top CMakeLists.txt).
  find_package(OpenSSL 3 REQUIRED COMPONENTS Crypto)
  add_executable(groupvit_webdataset_tests main.cpp test_webdataset.cpp)
  target_link_libraries(groupvit_webdataset_tests PRIVATE groupvit_webdataset Catch2::Catch2 OpenSSL::Crypto
                        nlohmann_json::nlohmann_json)
  target_compile_options(groupvit_webdataset_tests PRIVATE ${GROUPVIT_WARNINGS})

  # Shards written by Python's tarfile and gzip, good and damaged, and what a correct reader yields.
  add_test(NAME fixtures.webdataset
    COMMAND ${PY} ${PROJECT_SOURCE_DIR}/scripts/make_webdataset_fixtures.py ${FIXTURES}/webdataset)
  set_tests_properties(fixtures.webdataset PROPERTIES FIXTURES_SETUP webdataset TIMEOUT 120)
  add_test(NAME unit.webdataset COMMAND groupvit_webdataset_tests "[webdataset]")
  set_tests_properties(unit.webdataset PROPERTIES ENVIRONMENT "${TEST_ENV}" FIXTURES_REQUIRED webdataset
    TIMEOUT 120)
endif()
