#include "deploy/make/platform/platform.h"

__attribute__((noinline)) void mcuf_invoke_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void mcuf_invoke_end(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void mcuf_model_check_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void mcuf_model_check_end(void) { __asm__ volatile("" ::: "memory"); }
