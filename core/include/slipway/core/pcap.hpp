// PcapWriter: classic libpcap capture file (LINKTYPE_ETHERNET), readable by tcpdump -r and tshark.
#pragma once

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"

namespace slipway {

class PcapWriter {
  public:
    PcapWriter() = default;
    ~PcapWriter();
    PcapWriter(const PcapWriter&) = delete;
    PcapWriter& operator=(const PcapWriter&) = delete;

    // Creates (truncates) the file and writes the global header. Errc::io_error on failure; errno
    // is left as the failing call set it.
    Result<void> open(const std::string& path);
    // Appends one frame (the Ethernet frame, no virtio-net header). Frames above the snap length
    // are truncated in the file, as tcpdump does. Buffered (1 MiB): a write(2) only when the
    // buffer fills or flush() runs, on the caller's thread, so a capture is a debugging aid that
    // costs throughput. Errors are counted, never thrown; after the first failed write the
    // capture stops (errors() counts the frames not written), so the file never misframes.
    void write(ByteView frame) noexcept;
    // Pushes buffered records to the file (the network calls it every second and at the end).
    void flush() noexcept;
    [[nodiscard]] bool is_open() const noexcept { return f_ != nullptr; }
    [[nodiscard]] std::uint64_t frames() const noexcept { return frames_; }
    [[nodiscard]] std::uint64_t errors() const noexcept { return errors_; }

    static constexpr std::uint32_t kSnapLen = 262144;

  private:
    std::FILE* f_ = nullptr;
    std::unique_ptr<char[]> buf_;  // stdio buffer (setvbuf): must outlive f_
    std::uint64_t frames_ = 0;
    std::uint64_t errors_ = 0;
    bool broken_ = false;
};

}  // namespace slipway
