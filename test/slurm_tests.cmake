# `groupvit segment` scaled out on Slurm job arrays (test/slurm_test.py), each case on its own real
# single-node cluster (test/slurm_cluster.py: munged, slurmctld and slurmd from the Debian packages
# scripts/setup.sh installs, all state in a temporary directory, private ports picked at run time).
# Included inside test/CMakeLists.txt's if(TARGET groupvit_cli) block, after PY and FIXTURES are set.
# RESOURCE_LOCK slurm: one cluster at a time. Ports and files would not collide, but the node has the
# machine's few cores and cancel_resume times its scancel against a running task.
foreach(case array4 stepped list cancel_resume)
  add_test(NAME slurm.${case}
    COMMAND ${PY} ${CMAKE_CURRENT_SOURCE_DIR}/slurm_test.py $<TARGET_FILE:groupvit_cli> ${FIXTURES}/cli
            ${CMAKE_CURRENT_BINARY_DIR}/slurm_work ${case})
  set_tests_properties(slurm.${case} PROPERTIES FIXTURES_REQUIRED cli RESOURCE_LOCK slurm TIMEOUT 300)
endforeach()
