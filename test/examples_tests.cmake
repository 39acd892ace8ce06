# The scale-out examples in examples/large-runs/ run as written (test/examples_test.py): the Kubernetes
# indexed Job's command line once per completion index, the Slurm array script submitted to a real
# single-node cluster (test/slurm_cluster.py), and make_shards.py's shards against the directory they
# came from. Included inside test/CMakeLists.txt's if(TARGET groupvit_cli) block, after PY and FIXTURES
# are set. RESOURCE_LOCK slurm as in slurm_tests.cmake: one cluster at a time.
foreach(case k8s_manifest slurm_script make_shards)
  add_test(NAME examples.${case}
    COMMAND ${PY} ${CMAKE_CURRENT_SOURCE_DIR}/examples_test.py $<TARGET_FILE:groupvit_cli> ${FIXTURES}/cli
            ${CMAKE_CURRENT_BINARY_DIR}/examples_work ${case})
  set_tests_properties(examples.${case} PROPERTIES FIXTURES_REQUIRED cli TIMEOUT 300)
endforeach()
set_tests_properties(examples.slurm_script PROPERTIES RESOURCE_LOCK slurm)
