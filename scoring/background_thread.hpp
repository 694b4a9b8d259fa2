#pragma once
// Background threads (storage, WAL sync, score writer, webhooks, outbound
// HTTP, retention) run at a lower CPU priority than the I/O threads: on a
// machine with fewer cores than busy threads, a proxied call's I/O thread
// then gets the CPU as soon as its socket is ready instead of waiting out a
// background thread's time slice (the tail latency DESIGN.md §9 budgets).
// They are niced, not idled: under a sustained overload they still get a
// share, so their bounded queues drain (and the score writer, which also
// serves the API's score writes, is never stuck behind idle-only time). The
// evaluator workers are idled by default (server.evaluator_sched_idle): their
// runs can wait in storage; else they have their own nice value
// (server.evaluator_nice).

namespace arbiter::scoring {

// Names the calling thread (shown by top -H, perf, gdb; at most 15
// characters are kept).
void name_thread(const char* name);

// Sets the calling thread's nice value (0-19; Linux keeps one per thread),
// never below the one it has. False when the system refuses.
bool set_thread_nice(int nice);
// Moves the calling thread to SCHED_IDLE: it runs only when a CPU has nothing
// else to run, and any other thread that wakes preempts it. One way: an
// unprivileged thread cannot leave it. false when the system refuses.
bool set_thread_sched_idle();

// name_thread(name) and set_thread_nice(background_nice()).
void enter_background_thread(const char* name);

// The nice value enter_background_thread() gives (server.background_nice);
// process-wide, read when each background thread starts. Clamped to 0-19.
inline constexpr int kDefaultBackgroundNice = 5;
int background_nice();
void set_background_nice(int nice);

}  // namespace arbiter::scoring
