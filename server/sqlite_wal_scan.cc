#include "server/sqlite_wal_scan.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"

namespace prewarm {
namespace {

// The WAL format, as SQLite's wal.c reads it in walIndexRecover() and walDecodeFrame().
constexpr uint32_t kWalMagic = 0x377f0682;  // | 1: checksums over big-endian words.
constexpr uint32_t kWalVersion = 3007000;
constexpr size_t kWalHeaderBytes = 32;
constexpr size_t kFrameHeaderBytes = 24;

uint32_t BigEndian32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
uint32_t LittleEndian32(const unsigned char* p) {
  return (uint32_t{p[3]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[1]} << 8) | uint32_t{p[0]};
}

using Checksum = std::array<uint32_t, 2>;

// walChecksumBytes(): Fibonacci-weighted sums of 32-bit words. `bytes` is a multiple of 8.
Checksum Sum(bool big_endian, const unsigned char* data, size_t bytes, Checksum seed) {
  uint32_t s1 = seed[0], s2 = seed[1];
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    const uint32_t a = big_endian ? BigEndian32(data + i) : LittleEndian32(data + i);
    const uint32_t b = big_endian ? BigEndian32(data + i + 4) : LittleEndian32(data + i + 4);
    s1 += a + s2;
    s2 += b + s1;
  }
  return {s1, s2};
}

// A frame's checksum chained from `seed`: its header's first 8 bytes, then its page.
Checksum FrameSum(bool big_endian, const std::vector<unsigned char>& frame, Checksum seed) {
  Checksum sum = Sum(big_endian, frame.data(), 8, seed);
  return Sum(big_endian, frame.data() + kFrameHeaderBytes, frame.size() - kFrameHeaderBytes, sum);
}

Checksum StoredSum(const unsigned char* at) { return {BigEndian32(at), BigEndian32(at + 4)}; }

}  // namespace

absl::StatusOr<WalScan> ScanSqliteWal(const std::string& wal_path) {
  WalScan scan;
  std::ifstream in(wal_path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return scan;
    return absl::UnavailableError(
        absl::StrCat("cannot read the WAL '", wal_path, "': ", std::strerror(errno)));
  }
  std::array<unsigned char, kWalHeaderBytes> header;
  if (!in.read(reinterpret_cast<char*>(header.data()), header.size())) return scan;  // Empty.
  scan.present = true;

  const uint32_t magic = BigEndian32(&header[0]);
  const bool big_endian = (magic & 1) != 0;
  const uint32_t page_size = BigEndian32(&header[8]);
  const bool page_size_ok =
      page_size >= 512 && page_size <= 65536 && (page_size & (page_size - 1)) == 0;
  scan.header_valid = (magic & ~uint32_t{1}) == kWalMagic &&
                      BigEndian32(&header[4]) == kWalVersion && page_size_ok &&
                      Sum(big_endian, header.data(), 24, {0, 0}) == StoredSum(&header[24]);
  // Without a page size there are no frames to speak of.
  if (!page_size_ok) return scan;

  std::vector<unsigned char> frame(kFrameHeaderBytes + page_size);
  std::vector<unsigned char> previous(kFrameHeaderBytes);  // The previous frame's header.
  // The salts every frame of this generation carries: the header's, or with a damaged header
  // the first frame's (SQLite then ignores the whole WAL).
  std::array<unsigned char, 8> salts;
  std::memcpy(salts.data(), &header[16], 8);
  Checksum running = StoredSum(&header[24]);
  bool replaying = scan.header_valid;
  if (!replaying) scan.first_bad_frame = 0;
  int64_t replayed_until = 0;  // Frames up to and including the last valid commit.
  for (int64_t index = 0; in.read(reinterpret_cast<char*>(frame.data()), frame.size()); ++index) {
    ++scan.frames;
    if (index == 0 && !scan.header_valid) std::memcpy(salts.data(), &frame[8], 8);
    const bool same_generation = std::memcmp(&frame[8], salts.data(), 8) == 0;
    const uint32_t page = BigEndian32(&frame[0]);
    const bool commit = BigEndian32(&frame[4]) != 0;
    if (replaying) {
      const Checksum sum = FrameSum(big_endian, frame, running);
      if (same_generation && page != 0 && sum == StoredSum(&frame[16])) {
        running = sum;
        if (commit) {
          replayed_until = index + 1;
          ++scan.replayed_commits;
        }
      } else {
        replaying = false;
        scan.first_bad_frame = index;
      }
    } else if (index > 0 && same_generation && page != 0 &&
               FrameSum(big_endian, frame, StoredSum(&previous[16])) == StoredSum(&frame[16])) {
      ++scan.lost_frames;
      if (commit) ++scan.lost_commits;
    }
    std::memcpy(previous.data(), frame.data(), kFrameHeaderBytes);
  }
  if (in.bad()) {
    return absl::UnavailableError(
        absl::StrCat("cannot read the WAL '", wal_path, "': ", std::strerror(errno)));
  }
  scan.replayed_frames = replayed_until;
  return scan;
}

}  // namespace prewarm
