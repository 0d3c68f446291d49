# `cmake --install` makes didmark a package: the static library, the public headers, the CLI,
# the server and the LibTorch plugin, and a CMake config so that another project can
#   find_package(didmark CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE didmark::didmark)
# (tests/consumer is such a project; scripts/test.sh builds it against an install).
include(CMakePackageConfigHelpers)

set(DIDMARK_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/didmark)
install(TARGETS didmark EXPORT didmark-targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/didmark DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT didmark-targets NAMESPACE didmark:: DESTINATION ${DIDMARK_CMAKE_DIR})

foreach(tool didmark_cli didmarkd)
  if(TARGET ${tool})
    install(TARGETS ${tool} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()
if(TARGET didmark_torch)
  # Beside the executables: where libdidmark looks for it (or $DIDMARK_TORCH_PLUGIN).
  install(TARGETS didmark_torch LIBRARY DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# The private dependencies of a static library travel with it: the config finds them again.
set(DIDMARK_CONFIG_HAVE_CUDA ${DIDMARK_HAVE_CUDA})
# (Areas link them from their own folders, where the imported targets live: read the list.)
get_target_property(_didmark_links didmark LINK_LIBRARIES)
set(DIDMARK_CONFIG_HAVE_LIBCRYPTO OFF)
if("PkgConfig::LIBCRYPTO" IN_LIST _didmark_links)
  set(DIDMARK_CONFIG_HAVE_LIBCRYPTO ON)
endif()
set(DIDMARK_CONFIG_HAVE_RE2 OFF)
if("PkgConfig::RE2" IN_LIST _didmark_links)
  set(DIDMARK_CONFIG_HAVE_RE2 ON)
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/didmark-config.cmake.in
                              ${PROJECT_BINARY_DIR}/didmark-config.cmake INSTALL_DESTINATION ${DIDMARK_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/didmark-config-version.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/didmark-config.cmake ${PROJECT_BINARY_DIR}/didmark-config-version.cmake
        DESTINATION ${DIDMARK_CMAKE_DIR})
