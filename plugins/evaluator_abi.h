/* arbiter evaluator plugin ABI (DESIGN.md §6).
 *
 * A plugin is a shared library that exports ONE symbol, the C function
 * `arbiter_evaluator_plugin`, which returns a pointer to a static table of
 * function pointers. The gateway dlopen()s the library at start, calls the
 * entry point, and refuses the plugin (a start-up error naming the library)
 * when the symbol is missing, the pointer is NULL, `abi_version` differs from
 * ARBITER_EVALUATOR_ABI_VERSION, or `struct_size` is smaller than the table it
 * expects.
 *
 * Why one unversioned entry point plus a version field, rather than a
 * versioned symbol name: a plugin built against another ABI then fails with
 * "ABI version 2, gateway supports 1" instead of a bare "symbol not found", and
 * the first two fields below are frozen forever so that check is always safe.
 *
 * Plain C (C99 and later, C++ via the extern "C" guards). No C++ type, no
 * exception and no allocator crosses this boundary: every string the plugin
 * returns is freed by the plugin's own `free_string`.
 *
 * ---------------------------------------------------------------------------
 * Strings
 *   All strings are UTF-8 and NUL-terminated. Inputs are also passed with their
 *   length in bytes (excluding the NUL) so the plugin need not call strlen on
 *   large events. Inputs are owned by the gateway and valid only for the
 *   duration of the call: a plugin that needs them later must copy them.
 *
 * create(config_json, config_len, error_out) -> handle
 *   `config_json` is the evaluator's `params.config` from the conf file,
 *   serialised as JSON ("{}" when absent). Validate it here: the gateway calls
 *   create once per configured evaluator at start-up, so a bad config fails the
 *   start, with the plugin's message. On failure return NULL and, if
 *   `error_out` is non-NULL, set *error_out to a message allocated by the plugin
 *   (the gateway frees it with free_string) or leave it NULL.
 *
 * evaluate(handle, event_json, event_len) -> scores JSON
 *   `event_json` is the event of DESIGN.md §6 (inputs, outputs, feedback,
 *   properties, metadata, user_id, session_id, request_id). Return a
 *   NUL-terminated JSON document allocated by the plugin, one of:
 *     success  {"scores": {"<name>": <number | true | false | "category">, ...}}
 *              or {"scores": [{"name": "...", "value": ..., "comment": "..."}, ...]}
 *              (the same two shapes the `http` evaluator accepts; an empty
 *              object or list means "no score for this event", not an error)
 *     failure  {"error": "<message>"}
 *              optionally with "retryable": true for transient failures
 *              (timeouts, rate limits, upstream 5xx); the runtime retries those
 *              with backoff and records the rest as an error run at once.
 *   Returning NULL, invalid JSON, or neither key is recorded as an error run
 *   ("plugin returned no result" / the parse error); it never crashes the
 *   gateway and never drops the run silently.
 *
 * free_string(s)
 *   Frees a string returned by create (error_out) or evaluate. NULL is a no-op.
 *
 * destroy(handle)
 *   Releases a handle from create. Called once, at shutdown or reload, after
 *   every evaluate on that handle has returned. NULL is a no-op.
 *
 * ---------------------------------------------------------------------------
 * Thread-safety and lifetime
 *   - The entry point and create/destroy are called from one thread at a time
 *     (start-up / shutdown), never concurrently with each other.
 *   - evaluate MAY BE CALLED CONCURRENTLY ON THE SAME HANDLE from several
 *     evaluator worker threads (per-evaluator concurrency is a config knob, and
 *     one handle serves every worker). Treat the handle as immutable after
 *     create, or synchronise inside the plugin. A plugin that cannot do either
 *     sets ARBITER_EVALUATOR_FLAG_SERIAL and the gateway then serialises calls
 *     per handle (at the cost of throughput).
 *   - free_string may be called from any thread, for any string this plugin
 *     returned.
 *   - evaluate runs on a worker thread, never on the proxy's I/O threads, so it
 *     may block; but it must return in bounded time. The runtime's per-evaluator
 *     timeout can only abandon a call's result (C offers no safe way to
 *     interrupt it), so a hung call keeps one worker busy until it returns.
 *   - A plugin must not throw C++ exceptions across this boundary, call exit(),
 *     install signal handlers, or keep pointers to gateway-owned inputs.
 *   - The library stays loaded until after the last destroy; the table returned
 *     by the entry point must stay valid for as long as the library is loaded.
 */
#ifndef ARBITER_PLUGINS_EVALUATOR_ABI_H_
#define ARBITER_PLUGINS_EVALUATOR_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to ArbiterEvaluatorPluginV1 below. Adding
 * fields at the end does not bump it: the gateway reads `struct_size`. */
#define ARBITER_EVALUATOR_ABI_VERSION 1u

/* The exported entry point's name, for dlsym(). */
#define ARBITER_EVALUATOR_PLUGIN_SYMBOL "arbiter_evaluator_plugin"

/* `flags` bits. */
/* evaluate must not run concurrently on one handle; the gateway serialises. */
#define ARBITER_EVALUATOR_FLAG_SERIAL 0x1u

/* Opaque per-evaluator state owned by the plugin. */
typedef struct ArbiterEvaluator ArbiterEvaluator;

typedef struct ArbiterEvaluatorPluginV1 {
  /* Frozen header: these two fields keep their place in every ABI version. */
  uint32_t abi_version; /* ARBITER_EVALUATOR_ABI_VERSION the plugin was built with */
  uint32_t struct_size; /* sizeof(ArbiterEvaluatorPluginV1) as the plugin saw it */

  uint32_t flags;      /* ARBITER_EVALUATOR_FLAG_* bits, 0 for none */
  const char* name;    /* plugin name for logs and GET /v1/evaluators; static storage */
  const char* version; /* plugin's own version string; static storage; may be NULL */

  ArbiterEvaluator* (*create)(const char* config_json, size_t config_len, char** error_out);
  char* (*evaluate)(ArbiterEvaluator* handle, const char* event_json, size_t event_len);
  void (*free_string)(char* s);
  void (*destroy)(ArbiterEvaluator* handle);
} ArbiterEvaluatorPluginV1;

/* The one symbol a plugin exports. Returns a pointer to a table with static
 * storage duration (never NULL for a working plugin). */
typedef const ArbiterEvaluatorPluginV1* (*ArbiterEvaluatorPluginEntry)(void);

#if defined(_WIN32)
#define ARBITER_EVALUATOR_EXPORT __declspec(dllexport)
#else
#define ARBITER_EVALUATOR_EXPORT __attribute__((visibility("default")))
#endif

/* Plugins define this; the gateway only looks it up with dlsym(). */
ARBITER_EVALUATOR_EXPORT const ArbiterEvaluatorPluginV1* arbiter_evaluator_plugin(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* ARBITER_PLUGINS_EVALUATOR_ABI_H_ */
