# Test registration shared by the modules' CMakeLists.txt.

# cloud_unit_test(NAME [SOURCES src...] LIBS lib... [DEFINITIONS def...]
#                 [TIMEOUT seconds])
# Builds test_NAME from tests/unit/test_NAME.c (plus SOURCES, for modules
# a test compiles in itself), links LIBS and cmocka, and registers it as
# unit_NAME with the label unit.
function(cloud_unit_test name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "TIMEOUT" "SOURCES;LIBS;DEFINITIONS")
  add_executable(test_${name} ${PROJECT_SOURCE_DIR}/tests/unit/test_${name}.c
                 ${arg_SOURCES})
  target_link_libraries(test_${name} PRIVATE ${arg_LIBS} PkgConfig::CMOCKA)
  if(arg_DEFINITIONS)
    target_compile_definitions(test_${name} PRIVATE ${arg_DEFINITIONS})
  endif()
  add_test(NAME unit_${name} COMMAND test_${name})
  set_tests_properties(unit_${name} PROPERTIES LABELS unit)
  if(arg_TIMEOUT)
    set_tests_properties(unit_${name} PROPERTIES TIMEOUT ${arg_TIMEOUT})
  endif()
endfunction()
