# OpenCV's core, imgproc and imgcodecs modules as one imported target, groupvit::opencv.
#
# Found by header and library rather than with find_package(OpenCV): Debian's split packages
# (libopencv-core-dev, libopencv-imgproc-dev, libopencv-imgcodecs-dev) carry the headers and
# libraries but not OpenCVConfig.cmake, which only libopencv-dev has, and that one package brings
# all of OpenCV's modules with about 145 more packages. The same lookup works against a full
# OpenCV install. Used by the build and by the installed groupvitConfig.cmake.
if(TARGET groupvit::opencv)
  return()
endif()
# opencv2/core.hpp is under include/opencv4; cvconfig.h under the multiarch include/<arch>/opencv4.
find_path(GROUPVIT_OPENCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4)
find_path(GROUPVIT_OPENCV_CVCONFIG_DIR opencv2/cvconfig.h PATH_SUFFIXES opencv4)
set(_groupvit_opencv_vars GROUPVIT_OPENCV_INCLUDE_DIR GROUPVIT_OPENCV_CVCONFIG_DIR)
foreach(module core imgproc imgcodecs)
  find_library(GROUPVIT_OPENCV_${module}_LIBRARY opencv_${module})
  list(APPEND _groupvit_opencv_vars GROUPVIT_OPENCV_${module}_LIBRARY)
endforeach()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(GroupViTOpenCV NAME_MISMATCHED REQUIRED_VARS ${_groupvit_opencv_vars}
  FAIL_MESSAGE "OpenCV core/imgproc/imgcodecs not found (Debian: libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev)")
if(GroupViTOpenCV_FOUND)
  add_library(groupvit::opencv INTERFACE IMPORTED)
  # imgcodecs depends on imgproc, which depends on core: link order matters for static builds.
  set_target_properties(groupvit::opencv PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${GROUPVIT_OPENCV_INCLUDE_DIR};${GROUPVIT_OPENCV_CVCONFIG_DIR}"
    INTERFACE_LINK_LIBRARIES
      "${GROUPVIT_OPENCV_imgcodecs_LIBRARY};${GROUPVIT_OPENCV_imgproc_LIBRARY};${GROUPVIT_OPENCV_core_LIBRARY}")
endif()
unset(_groupvit_opencv_vars)
