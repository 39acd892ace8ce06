# groupvit serve on loopback (test/serve_test.py, in the test tools' venv): each endpoint against the
# CLI's results, bad input answered with a 4xx and the server healthy after, the API key, the queue
# limit, SIGTERM while a request is in flight, schemathesis against /openapi.json, and the page in
# Debian's headless Chromium (test/serve_browser_test.py, screenshots in serve_work/browser/).
set(GROUPVIT_TOOLS_PYTHON ${PROJECT_SOURCE_DIR}/.venv-tools/bin/python)
foreach(case openapi api bad_input auth limits sigterm schemathesis browser)
  add_test(NAME serve.${case}
    COMMAND ${GROUPVIT_TOOLS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/serve_test.py $<TARGET_FILE:groupvit_cli>
            ${FIXTURES}/cli ${CMAKE_CURRENT_BINARY_DIR}/serve_work ${case})
  set_tests_properties(serve.${case} PROPERTIES FIXTURES_REQUIRED cli TIMEOUT 400)
endforeach()
