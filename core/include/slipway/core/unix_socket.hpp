// Unix-domain sockets that slipway serves (attachments, the API): file-descriptor ownership and
// the one way a server socket is put on a path.
//
// Every server socket slipway creates is reachable by whoever can open its path, and whoever
// connects can inject frames as a guest or reconfigure the network, so each is made owner-only
// (mode 0600) before anyone can connect (stream sockets: before listen(); datagram sockets:
// before slipway reads from them). A file left at the path by an earlier run is replaced only if
// it is a socket nobody serves: a regular file is never removed and a live server is never
// stolen from. These run at start-up only and may allocate.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

#include "slipway/core/result.hpp"

namespace slipway {

// Owns one file descriptor; closes it when destroyed or reset.
class UniqueFd {
  public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(o.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
    int release() noexcept {
        const int f = fd_;
        fd_ = -1;
        return f;
    }
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

  private:
    int fd_ = -1;
};

// Fills a sockaddr_un for `path`; false if the path does not fit sun_path (with its NUL).
[[nodiscard]] bool make_unix_addr(const std::string& path, sockaddr_un& sa,
                                  socklen_t& len) noexcept;

// strerror(e) as a std::string (cold paths only: start-up and error messages).
[[nodiscard]] std::string errno_text(int e);

// Creates a non-blocking, close-on-exec unix socket of `type` (SOCK_STREAM or SOCK_DGRAM) bound
// at `path` with mode 0600. `sock_buf`, when non-zero, is asked for as SO_SNDBUF and SO_RCVBUF
// (best effort). Errors are one line in `error`, prefixed with `label` (a flag and the path, so
// the user knows which option to fix). The caller listens (stream) and unlinks the path when done.
[[nodiscard]] Result<UniqueFd> bind_unix_socket(const std::string& path, int type,
                                                const std::string& label, std::string& error,
                                                int sock_buf = 0);

}  // namespace slipway
