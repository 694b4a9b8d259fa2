# Runs `node --test` in tests/e2e for ctest (see CMakeLists.txt beside this
# file). Fails, rather than skips, when the npm dependencies are not installed.
#   cmake -DNODE=/usr/bin/node -DE2E_DIR=<repo>/tests/e2e -P run_e2e.cmake
if(NOT EXISTS "${E2E_DIR}/node_modules/openai/package.json")
  message(FATAL_ERROR
    "tests/e2e/node_modules is missing: run `npm ci` in ${E2E_DIR} before ctest "
    "(the project's test script does this).")
endif()
foreach(var ARBITER_BIN FAKE_UPSTREAM_BIN)
  if(NOT EXISTS "$ENV{${var}}")
    message(FATAL_ERROR "${var}='$ENV{${var}}' does not exist: build the arbiter and fake_upstream targets first.")
  endif()
endforeach()
execute_process(
  COMMAND "${NODE}" --test --test-reporter=spec
  WORKING_DIRECTORY "${E2E_DIR}"
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "node --test failed (${result})")
endif()
