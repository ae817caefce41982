# Fails when a plugin has STB_GNU_UNIQUE symbols: such a library can never really unload.
# Usage: cmake -DPLUGIN=<file.so> -P check_plugin.cmake
find_program(READELF readelf REQUIRED)
execute_process(COMMAND ${READELF} -sW ${PLUGIN} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf failed on ${PLUGIN}")
endif()
string(REGEX MATCHALL "[^\n]*UNIQUE[^\n]*" unique "${symbols}")
list(LENGTH unique count)
if(count GREATER 0)
  list(JOIN unique "\n" lines)
  message(FATAL_ERROR "${PLUGIN} has ${count} STB_GNU_UNIQUE symbol(s); it could never be "
                      "unloaded. Build it with shardline_add_plugin() (-fno-gnu-unique):\n${lines}")
endif()
