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

#include <cstdint>

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

// Yield points. A thread that wakes does not always preempt the one running
// on its CPU: under EEVDF the running one may finish its slice (1.4 ms on two
// CPUs), and on the bench VM (Linux 6.18, no kernel preemption) woken proxy
// threads waited out whole 1-5 ms runs of niced and even SCHED_IDLE threads
// (bench/README, "Results, session 18"). So a background thread's long run
// of CPU (a flush, a backlog of score writes) is a proxy thread's stall when
// both share a CPU.
//
// yield_point() is called between small units of work: on a thread that
// opted in, once kYieldQuantumUs have passed since its last yield it calls
// sched_yield(): a thread queued on the same CPU that the scheduler counts
// as eligible runs now. Yielding keeps the thread's fair share (it only gives
// up the rest of its current slice). A no-op on threads that did not opt in,
// such as the I/O threads.
inline constexpr long kYieldQuantumUs = 100;
void yield_point();
// Opts the calling thread in (enter_background_thread does).
void enable_yield_points();
// Yields made by all threads so far; for tests.
std::uint64_t yields_made();
// 0 makes every yield point yield (tests); negative restores kYieldQuantumUs.
void set_yield_quantum_us_for_testing(long us);

}  // namespace arbiter::scoring
