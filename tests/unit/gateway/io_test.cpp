// The I/O build settings the sessions rely on (gateway/io.hpp, CMakeLists.txt).

#include "gateway/io.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <cstdlib>
#include <vector>

namespace arbiter::gateway {
namespace {

namespace asio = boost::asio;

TEST(IoSettings, EachIoThreadKeepsEightFreedBlocksPerPurposeForReuse) {
  // A proxied call allocates eight coroutine frames and a few operations;
  // with 64 connections on two threads they are freed and allocated
  // interleaved. Asio keeps freed blocks per thread for reuse, two per
  // purpose by default; built with eight (CMakeLists.txt), a c1 call's
  // four aligned mallocs and frees went to none (bench/README, session 23).
  using Block = std::array<char, 200>;
  asio::io_context ioc;
  std::vector<Block*> first;
  std::vector<Block*> second;
  std::vector<void*> others;
  asio::post(ioc, [&] {
    asio::recycling_allocator<Block> alloc;  // the thread's cache, inside run()
    for (int i = 0; i < 8; ++i) first.push_back(alloc.allocate(1));
    for (Block* b : first) alloc.deallocate(b, 1);
    // Blocks the cache did not keep went back to malloc: take them, so that
    // they cannot come back below.
    for (int i = 0; i < 8; ++i) others.push_back(std::malloc(sizeof(Block) + 1));
    for (int i = 0; i < 8; ++i) second.push_back(alloc.allocate(1));
    for (Block* b : second) alloc.deallocate(b, 1);
  });
  ioc.run();
  for (void* p : others) std::free(p);
  ASSERT_EQ(first.size(), 8u);
  std::sort(first.begin(), first.end());
  std::sort(second.begin(), second.end());
  EXPECT_EQ(first, second);
}

}  // namespace
}  // namespace arbiter::gateway
