#pragma once
// The I/O types of the sessions, bound to io_context's own executor.
//
// Asio's defaults (asio::awaitable<T>, use_awaitable, tcp::socket,
// steady_timer) carry any_io_executor, a type-erased executor: every
// co_await of an operation copies, moves and destroys one or more of them
// through function pointers (the handler, the awaitable thread, the socket's
// outstanding-work record). On a proxied call that was 7 % of an I/O thread's
// instructions (bench/README, "Results, session 22"). Each worker runs one
// io_context on one thread, so the sessions name its executor type instead.
//
// Thread-safety: type aliases only.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>

namespace arbiter::gateway {

using IoExecutor = boost::asio::io_context::executor_type;
// A coroutine of a session; co_spawn it on the worker's io_context.
template <class T = void>
using Task = boost::asio::awaitable<T, IoExecutor>;
// The completion token that makes an operation awaitable in a Task.
inline constexpr boost::asio::use_awaitable_t<IoExecutor> use_task{};
using TcpSocket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, IoExecutor>;
using SteadyTimer = boost::asio::basic_waitable_timer<
    std::chrono::steady_clock, boost::asio::wait_traits<std::chrono::steady_clock>, IoExecutor>;

}  // namespace arbiter::gateway
