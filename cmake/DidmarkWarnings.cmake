# Warnings are errors (DIDMARK_WERROR) for our own code; third-party headers come in as SYSTEM.
function(didmark_set_warnings target)
  set(cxx_flags -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align
                -Wnull-dereference -Wdouble-promotion -Wimplicit-fallthrough
                -Wno-psabi)  # psabi: notes about vector-argument ABI of internal inline helpers
  if(DIDMARK_WERROR)
    list(APPEND cxx_flags -Werror)
  endif()
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${cxx_flags}>)
  if(DIDMARK_WERROR)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:--Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror>)
  endif()
endfunction()
