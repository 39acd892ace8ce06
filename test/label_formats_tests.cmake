# segment --format coco / labelstudio / cvat read back by the tools' own readers (pycocotools, Label
# Studio's SDK, Datumaro), in the venv scripts/setup.sh makes for them (test/label_formats_test.py).
set(GROUPVIT_FORMATS_PYTHON ${PROJECT_SOURCE_DIR}/.venv-tools/bin/python)
foreach(case all_formats scores resume_and_shards format_errors)
  add_test(NAME formats.${case}
    COMMAND ${GROUPVIT_FORMATS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/label_formats_test.py $<TARGET_FILE:groupvit_cli>
            ${FIXTURES}/cli ${CMAKE_CURRENT_BINARY_DIR}/formats_work ${case})
  set_tests_properties(formats.${case} PROPERTIES FIXTURES_REQUIRED cli TIMEOUT 300)
endforeach()
