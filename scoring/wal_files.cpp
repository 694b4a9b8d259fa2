#include "scoring/wal_files.hpp"

#include <algorithm>
#include <atomic>
#include <string_view>

namespace arbiter::scoring {

struct WalFiles::Tracked {
  std::unique_ptr<rocksdb::FSWritableFile> file;
  std::string dir;
  std::mutex mu;        // the file's Close vs a sync of it
  bool closed = false;  // under mu
  // Set after every append that reached the file; sync() clears it before
  // its fdatasync, so an append it misses sets it again.
  std::atomic<bool> dirty{false};
  std::atomic<bool> dir_synced{false};
};

// What RocksDB holds: forwards everything, notes appends, and deregisters
// when RocksDB drops the file. The Tracked state may outlive it by a sync in
// progress, which keeps the underlying file (and its descriptor) valid.
class WalFiles::File : public rocksdb::FSWritableFileWrapper {
 public:
  File(WalFiles& owner, std::shared_ptr<Tracked> tracked)
      : FSWritableFileWrapper(tracked->file.get()), owner_(owner), tracked_(std::move(tracked)) {}
  ~File() override { owner_.untrack(tracked_.get()); }

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    return appended(target()->Append(data, options, dbg));
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info, rocksdb::IODebugContext* dbg) override {
    return appended(target()->Append(data, options, info, dbg));
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, std::uint64_t offset,
                                     const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    return appended(target()->PositionedAppend(data, offset, options, dbg));
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, std::uint64_t offset,
                                     const rocksdb::IOOptions& options, const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    return appended(target()->PositionedAppend(data, offset, options, info, dbg));
  }
  rocksdb::IOStatus Close(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    std::lock_guard lk(tracked_->mu);
    tracked_->closed = true;
    return target()->Close(options, dbg);
  }

 private:
  rocksdb::IOStatus appended(rocksdb::IOStatus s) {
    // A failed append may still have written part of its bytes.
    tracked_->dirty.store(true, std::memory_order_release);
    return s;
  }

  WalFiles& owner_;
  std::shared_ptr<Tracked> tracked_;
};

WalFiles::WalFiles(const std::shared_ptr<rocksdb::FileSystem>& base) : FileSystemWrapper(base) {}

WalFiles::~WalFiles() = default;

void WalFiles::track(const std::string& name, std::unique_ptr<rocksdb::FSWritableFile>* result) {
  if (!std::string_view(name).ends_with(".log")) return;  // RocksDB's WAL files: <number>.log
  auto tracked = std::make_shared<Tracked>();
  tracked->file = std::move(*result);
  const auto slash = name.rfind('/');
  tracked->dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : name.substr(0, slash));
  *result = std::make_unique<File>(*this, tracked);
  std::lock_guard lk(mu_);
  files_.push_back(std::move(tracked));
}

void WalFiles::untrack(const Tracked* file) {
  std::lock_guard lk(mu_);
  std::erase_if(files_, [&](const std::shared_ptr<Tracked>& t) { return t.get() == file; });
}

std::size_t WalFiles::tracked() const {
  std::lock_guard lk(mu_);
  return files_.size();
}

rocksdb::IOStatus WalFiles::NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                            std::unique_ptr<rocksdb::FSWritableFile>* result,
                                            rocksdb::IODebugContext* dbg) {
  auto s = target()->NewWritableFile(name, options, result, dbg);
  if (s.ok()) track(name, result);
  return s;
}

rocksdb::IOStatus WalFiles::ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                               std::unique_ptr<rocksdb::FSWritableFile>* result,
                                               rocksdb::IODebugContext* dbg) {
  auto s = target()->ReopenWritableFile(name, options, result, dbg);
  if (s.ok()) track(name, result);
  return s;
}

rocksdb::IOStatus WalFiles::ReuseWritableFile(const std::string& name, const std::string& old_name,
                                              const rocksdb::FileOptions& options,
                                              std::unique_ptr<rocksdb::FSWritableFile>* result,
                                              rocksdb::IODebugContext* dbg) {
  auto s = target()->ReuseWritableFile(name, old_name, options, result, dbg);
  if (s.ok()) track(name, result);
  return s;
}

rocksdb::IOStatus WalFiles::sync() {
  std::vector<std::shared_ptr<Tracked>> files;
  {
    std::lock_guard lk(mu_);
    files = files_;
  }
  const rocksdb::IOOptions io;
  for (auto& t : files) {
    if (!t->dirty.exchange(false, std::memory_order_acq_rel)) continue;
    std::lock_guard lk(t->mu);
    // A closed WAL is one RocksDB no longer needs (its memtable is flushed)
    // or one closed with the database (which syncs it first).
    if (t->closed) continue;
    if (auto s = t->file->Sync(io, nullptr); !s.ok()) {
      t->dirty.store(true, std::memory_order_release);
      return s;
    }
  }
  // A new file's name is durable once its directory is synced.
  std::vector<std::string> dirs;
  for (auto& t : files) {
    if (!t->dir_synced.load(std::memory_order_acquire) &&
        std::find(dirs.begin(), dirs.end(), t->dir) == dirs.end()) {
      dirs.push_back(t->dir);
    }
  }
  for (const auto& dir : dirs) {
    std::unique_ptr<rocksdb::FSDirectory> d;
    auto s = target()->NewDirectory(dir, io, &d, nullptr);
    if (s.ok()) s = d->Fsync(io, nullptr);
    if (d) (void)d->Close(io, nullptr);
    if (!s.ok()) return s;
    for (auto& t : files) {
      if (t->dir == dir) t->dir_synced.store(true, std::memory_order_release);
    }
  }
  return rocksdb::IOStatus::OK();
}

}  // namespace arbiter::scoring
