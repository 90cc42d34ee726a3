// Server unix sockets: see unix_socket.hpp for the rules (mode 0600, stale sockets only).
#include "slipway/core/unix_socket.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace slipway {

bool make_unix_addr(const std::string& path, sockaddr_un& sa, socklen_t& len) noexcept {
    std::memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof sa.sun_path) return false;
    std::memcpy(sa.sun_path, path.data(), path.size());
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return true;
}

std::string errno_text(int e) {
    // strerror is not thread-safe in theory; strerror_r's GNU variant returns the text.
    char buf[128];
    const char* s = ::strerror_r(e, buf, sizeof buf);
    return std::string(s);
}

namespace {

// Whether a socket file at the path is stale: only a refused connection proves that nobody is
// bound there. Anything else is taken as live, so a server is never robbed of its path: a
// connection made or in progress, a full backlog (EAGAIN: the probe is non-blocking, so a stuck
// server cannot hang start-up), or a server of the other type (EPROTOTYPE: a datagram server at
// the path of a stream socket, or the reverse).
bool socket_is_stale(const sockaddr_un& sa, socklen_t len, int type) {
    UniqueFd probe(::socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!probe.valid()) return false;
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&sa), len) == 0) return false;
    return errno == ECONNREFUSED;
}

}  // namespace

Result<UniqueFd> bind_unix_socket(const std::string& path, int type, const std::string& label,
                                  std::string& error, int sock_buf) {
    sockaddr_un sa{};
    socklen_t sa_len = 0;
    if (!make_unix_addr(path, sa, sa_len)) {
        error = label + (path.empty() ? ": empty socket path"
                                      : ": path too long for a unix socket (at most " +
                                            std::to_string(sizeof sa.sun_path - 1) + " bytes)");
        return fail(Errc::invalid_argument);
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            error = label + ": exists and is not a socket";
            return fail(Errc::invalid_argument);
        }
        if (!socket_is_stale(sa, sa_len, type)) {
            error = label + ": another server is listening there (or the socket is not ours)";
            return fail(Errc::io_error);
        }
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
            error = label + ": cannot remove stale socket: " + errno_text(errno);
            return fail(Errc::io_error);
        }
    }
    UniqueFd fd(::socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
        error = label + ": socket: " + errno_text(errno);
        return fail(Errc::io_error);
    }
    if (sock_buf > 0) {
        // Best effort: without them jumbo frames may not fit, but MTU-sized traffic still works.
        (void)::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &sock_buf, sizeof sock_buf);
        (void)::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &sock_buf, sizeof sock_buf);
    }
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sa_len) != 0) {
        error = label + ": bind: " + errno_text(errno);
        return fail(Errc::io_error);
    }
    // chmod after bind: the file is created with the umask's mode and cannot be made stricter
    // beforehand (umask is process-wide, so not ours to change). A stream client cannot connect
    // before the caller's listen(); a datagram sent in the microseconds between bind and chmod
    // would be read, which is why the socket's directory should be private too (README).
    if (::chmod(path.c_str(), 0600) != 0) {
        error = label + ": chmod 0600: " + errno_text(errno);
        ::unlink(path.c_str());
        return fail(Errc::io_error);
    }
    return fd;
}

}  // namespace slipway
