#include "scoring/record_handoff.hpp"

namespace arbiter::scoring {

std::shared_ptr<const RequestRecord> RecordHandoff::take(const RequestRecord& record) {
  const std::size_t bytes = sizeof(RequestRecord) + record.request_body.size() + record.response_body.size() +
                            record.stream_raw.size();
  if (bytes > kMaxHandedRecordBytes) return nullptr;
  std::size_t before = held_->load(std::memory_order_relaxed);
  do {
    if (before + bytes > budget_) return nullptr;
  } while (!held_->compare_exchange_weak(before, before + bytes, std::memory_order_relaxed));
  std::shared_ptr<const RequestRecord> owner = record.weak_from_this().lock();
  if (!owner) owner = std::make_shared<const RequestRecord>(record);
  const RequestRecord* raw = owner.get();
  // A control block of its own, so that the bytes are given back when this
  // hand-off's last pointer goes, whoever else still holds the record.
  return std::shared_ptr<const RequestRecord>(
      raw, [held = held_, bytes, owner = std::move(owner)](const RequestRecord*) mutable {
        owner.reset();
        held->fetch_sub(bytes, std::memory_order_relaxed);
      });
}

}  // namespace arbiter::scoring
