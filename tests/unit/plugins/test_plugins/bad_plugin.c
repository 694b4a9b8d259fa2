/* Deliberately broken evaluator plugins, one per start-up error the loader
 * must report, plus one that misbehaves at evaluate time. Each variant is this
 * file compiled with one BAD_* definition (see CMakeLists.txt here). */
#include <stdlib.h>
#include <string.h>

#include "plugins/evaluator_abi.h"

static char* copy_string(const char* s) {
  size_t n = strlen(s) + 1;
  char* out = (char*)malloc(n);
  if (out != NULL) memcpy(out, s, n);
  return out;
}

static int g_handle;

static ArbiterEvaluator* bad_create(const char* config, size_t len, char** error_out) {
  (void)config;
  (void)len;
  (void)error_out;
  return (ArbiterEvaluator*)&g_handle;
}

/* The "garbage" variant answers an event containing "null" with NULL and any
 * other event with text that is not JSON. */
__attribute__((unused)) static char* bad_evaluate(ArbiterEvaluator* handle, const char* event,
                                                  size_t len) {
  (void)handle;
  (void)len;
  if (strstr(event, "null") != NULL) return NULL;
  return copy_string("this is not json");
}

static void bad_free(char* s) {
  free(s);
}

static void bad_destroy(ArbiterEvaluator* handle) {
  (void)handle;
}

__attribute__((unused)) static const ArbiterEvaluatorPluginV1 kTable = {
#if defined(BAD_ABI_VERSION)
    ARBITER_EVALUATOR_ABI_VERSION + 1u,
#else
    ARBITER_EVALUATOR_ABI_VERSION,
#endif
#if defined(BAD_STRUCT_SIZE)
    16u, /* only the frozen header and flags, as an older, smaller table */
#else
    (uint32_t)sizeof(ArbiterEvaluatorPluginV1),
#endif
    0u,
    "bad",
    NULL,
    bad_create,
#if defined(BAD_NULL_FUNCTION)
    NULL,
#else
    bad_evaluate,
#endif
    bad_free,
    bad_destroy,
};

#if defined(BAD_MISSING_SYMBOL)
/* Exports a differently named entry point, as a plugin built for another
 * convention would. */
ARBITER_EVALUATOR_EXPORT const ArbiterEvaluatorPluginV1* arbiter_evaluator_plugin_v2(void);
const ArbiterEvaluatorPluginV1* arbiter_evaluator_plugin_v2(void) {
  return &kTable;
}
#elif defined(BAD_NULL_TABLE)
const ArbiterEvaluatorPluginV1* arbiter_evaluator_plugin(void) {
  return NULL;
}
#else
const ArbiterEvaluatorPluginV1* arbiter_evaluator_plugin(void) {
  return &kTable;
}
#endif
