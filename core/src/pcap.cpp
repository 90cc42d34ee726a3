// PcapWriter: classic libpcap capture files (global header + one record per frame), buffered.
#include "slipway/core/pcap.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace slipway {

namespace {

// libpcap's file format (pcap-savefile(5)): fields in the writer's native byte order; a reader
// recognises the order from the magic number. Microsecond timestamps, Ethernet link type.
constexpr std::uint32_t kMagicMicros = 0xa1b2c3d4;
constexpr std::uint16_t kVersionMajor = 2;
constexpr std::uint16_t kVersionMinor = 4;
constexpr std::uint32_t kLinktypeEthernet = 1;
constexpr std::size_t kGlobalHeaderLen = 24;
constexpr std::size_t kRecordHeaderLen = 16;
constexpr std::size_t kStdioBuffer = std::size_t{1} << 20;

template <class T>
void put(std::byte* p, std::size_t off, T v) noexcept {
    std::memcpy(p + off, &v, sizeof v);  // native order, as libpcap writes
}

}  // namespace

PcapWriter::~PcapWriter() {
    if (f_ != nullptr) {
        flush();
        std::fclose(f_);
        f_ = nullptr;
    }
}

Result<void> PcapWriter::open(const std::string& path) {
    if (f_ != nullptr) {
        flush();
        std::fclose(f_);
        f_ = nullptr;
    }
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return fail(Errc::io_error);
    if (!buf_) buf_ = std::make_unique<char[]>(kStdioBuffer);
    // Large full buffering: a capture of a busy network must not cost a write(2) per frame.
    if (std::setvbuf(f, buf_.get(), _IOFBF, kStdioBuffer) != 0) {
        std::fclose(f);
        return fail(Errc::io_error);
    }
    std::byte h[kGlobalHeaderLen] = {};
    put(h, 0, kMagicMicros);
    put(h, 4, kVersionMajor);
    put(h, 6, kVersionMinor);
    put(h, 8, std::int32_t{0});    // thiszone: timestamps are UTC
    put(h, 12, std::uint32_t{0});  // sigfigs
    put(h, 16, kSnapLen);
    put(h, 20, kLinktypeEthernet);
    if (std::fwrite(h, 1, sizeof h, f) != sizeof h) {
        std::fclose(f);
        return fail(Errc::io_error);
    }
    f_ = f;
    frames_ = 0;
    broken_ = false;
    return {};
}

void PcapWriter::write(ByteView frame) noexcept {
    if (f_ == nullptr) return;
    if (broken_) {  // after a failed write the file's record framing is unknown: stop there
        ++errors_;
        return;
    }
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
    const auto orig = static_cast<std::uint32_t>(frame.size());
    const std::uint32_t cap = std::min(orig, kSnapLen);
    std::byte h[kRecordHeaderLen];
    put(h, 0, static_cast<std::uint32_t>(us / 1000000));
    put(h, 4, static_cast<std::uint32_t>(us % 1000000));
    put(h, 8, cap);
    put(h, 12, orig);
    if (std::fwrite(h, 1, sizeof h, f_) != sizeof h ||
        (cap != 0 && std::fwrite(frame.data(), 1, cap, f_) != cap)) {
        // A header without its frame (or half of either) would misframe every later record, so
        // the capture ends here; what was written before stays readable.
        broken_ = true;
        ++errors_;
        return;
    }
    ++frames_;
}

void PcapWriter::flush() noexcept {
    if (f_ != nullptr && !broken_ && std::fflush(f_) != 0) {
        broken_ = true;
        ++errors_;
    }
}

}  // namespace slipway
