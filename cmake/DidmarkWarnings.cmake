# Warnings are errors (DIDMARK_WERROR) for our own code; third-party headers come in as SYSTEM.
function(didmark_set_warnings target)
  set(cxx_flags -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align
                -Wnull-dereference -Wdouble-promotion -Wimplicit-fallthrough
                -Wno-psabi     # notes about the vector-argument ABI of internal inline helpers
                -Wno-restrict) # GCC 12 false positives on std::string operator+ (GCC bug 105329)
  if(DIDMARK_SANITIZE)
    # Sanitizer instrumentation makes GCC 12's flow analysis report maybe-uninitialized
    # values inside <regex> and <variant>; the Release build keeps the warning.
    list(APPEND cxx_flags -Wno-maybe-uninitialized)
  endif()
  if(DIDMARK_WERROR)
    list(APPEND cxx_flags -Werror)
  endif()
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${cxx_flags}>)
  if(DIDMARK_WERROR)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:--Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror>)
  endif()
endfunction()
