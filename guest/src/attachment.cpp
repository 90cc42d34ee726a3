// Attachments: parsing of attachment specs, and the shared helpers of the guest folder.
//
// Theory of operation
// -------------------
// An attachment is the SwitchPort whose far side is a guest: a TAP device inside a network
// namespace (netns_tap.cpp), a QEMU `-netdev stream` client on a unix stream socket
// (qemu_stream.cpp), a vfkit/krunkit/libkrun peer on a unix datagram socket (vfkit_dgram.cpp), or
// a vhost-user front end (QEMU, cloud-hypervisor) that shares the guest's memory and virtqueues
// over a unix stream socket (vhost_user.cpp; the protocol in vhost_user_session.cpp, the queues'
// data path in virtio_net.cpp).
//
// Threading. Everything runs on the network thread, inside the network's io_context: readiness
// callbacks, the Switch and the attachment's egress all share that thread, so no attachment takes a
// lock. The only exception is the netns TAP's start(): the TAP has to be created by a thread that
// sits in the target namespace, so start() spawns a short-lived thread that setns()es there, opens
// /dev/net/tun and hands the fd back; the fd keeps the device in that namespace afterwards.
//
// Readiness. FdWatcher waits on the raw fd and the handler does the I/O itself, in bursts:
// recvmmsg/sendmmsg for datagrams, read of a 256 KiB chunk for the stream, one read() per frame
// for the TAP (the TAP hands out exactly one frame per read). The vhost-user socket carries only
// control messages (read one whole message at a time, with the fds that come with it); its frames
// move through the guest's virtqueues, whose kick eventfds the device watches on the same loop.
// Asio registers fds edge-triggered, so a handler either reads until EAGAIN before waiting again,
// or — after a full burst, to let the rest of the loop run — posts its own continuation instead of
// waiting (an edge that already happened would never be reported again). Every handler captures
// the liveness token of the fd it waited on (attachment_impl.hpp), because a cancelled or stale
// completion may run after the fd was closed or the attachment destroyed.
//
// Ingress (guest -> switch). Frames land in PacketRefs from the pool: MTU-sized frames in the
// small class, GSO super-frames and jumbo frames in the large class. The TAP reads into a large
// staging buffer and copies frames that fit a small buffer (the staging buffer stays); a frame that
// does not fit is handed over whole and a new staging buffer is taken. The stream port reads big
// chunks (many frames per read()) into its own receive area and copies each complete frame into a
// pool buffer, keeping a partial frame for the next read. The datagram port receives each datagram
// in place into a small pool buffer, spilling into a per-slot overflow area only for jumbo
// datagrams, which are then copied into a large buffer. Each burst is pushed into to_switch() with
// one push_burst() and followed by one notify_switch(). Ingress does not enforce max_frame: frames
// up to the 65,550-byte wire limit go to the switch, which drops what a destination cannot take.
//
// Egress (switch -> guest). The switch pushes into to_port() and calls on_frames_from_switch();
// the attachment pops a burst and writes it (writev of length prefixes + frames for the stream,
// sendmmsg for datagrams, one write() per frame for the TAP, with the virtio-net header prepended
// into the headroom). Frames that could not be written because the peer is not writable are kept
// — the popped ones in a pending slot of one burst, the rest left in to_port() — and the attachment
// waits for writability; it never spins. Meanwhile to_port() fills up and the switch counts
// drop_ring_full for this port: that is the back-pressure, bounded by the ring size. A datagram
// peer whose receive queue is full still polls writable (the kernel's unconnected-unix-datagram
// rule), so the vfkit port backs off with a short timer when a writable wake made no progress.
//
// What is counted (PortCounters):
//   drop_wire       malformed wire input: bad stream length (the connection is closed), datagram
//                   shorter than an Ethernet header or truncated, bad virtio-net header from the
//                   TAP, a malformed or forbidden vhost-user message (the connection is closed).
//                   Each also logs a rate-limited warning.
//   drop_ring_full  to_switch() was full on ingress.
//   drop_no_buffer  the pool had no buffer for an ingress frame.
//   drop_too_big    an egress frame larger than the far side can take.
//   drop_io         egress frames with nobody to take them (no client / no peer yet / the client
//                   left with frames queued) or lost to a write error.
//   rx_*/tx_* are the switch's to count; the attachment does not double-count them.
//
// Specs (make_attachment): `netns:PATH[,ifname=NAME]`, `qemu:PATH`, `vfkit:PATH`,
// `vhost-user:PATH`. Parsing is strict; every error is one line in `error` and
// Errc::invalid_argument.
#include <cstring>
#include <string>
#include <string_view>

#include "attachment_impl.hpp"

namespace slipway::guest {
namespace {

constexpr std::size_t kMaxIfname = 15;  // IFNAMSIZ - 1

bool valid_ifname(std::string_view n) {
    if (n.empty() || n.size() > kMaxIfname || n == "." || n == "..") return false;
    for (const char c : n) {
        // The kernel rejects '/', ':' and whitespace in device names (dev_valid_name()).
        if (c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\0') return false;
    }
    return true;
}

bool check_unix_path(std::string_view path, std::string_view spec, std::string& error) {
    if (path.empty()) {
        error = "attachment '" + std::string(spec) + "': empty socket path";
        return false;
    }
    if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
        error = "attachment '" + std::string(spec) + "': socket path longer than " +
                std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes";
        return false;
    }
    return true;
}

}  // namespace

Result<std::unique_ptr<Attachment>> make_attachment(std::string_view spec,
                                                    const AttachmentContext& ctx,
                                                    std::string& error) {
    const std::size_t colon = spec.find(':');
    if (colon == std::string_view::npos) {
        error = "attachment '" + std::string(spec) +
                "': expected netns:PATH[,ifname=NAME], qemu:PATH, vfkit:PATH or vhost-user:PATH";
        return fail(Errc::invalid_argument);
    }
    const std::string_view scheme = spec.substr(0, colon);
    const std::string_view rest = spec.substr(colon + 1);

    if (scheme == "netns") {
        const std::size_t comma = rest.find(',');
        const std::string_view path = rest.substr(0, comma);
        if (path.empty()) {
            error = "attachment '" + std::string(spec) + "': empty namespace path";
            return fail(Errc::invalid_argument);
        }
        std::string ifname = "eth0";
        bool have_ifname = false;
        std::string_view opts =
            comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        if (comma != std::string_view::npos && opts.empty()) {
            error = "attachment '" + std::string(spec) + "': empty option after ','";
            return fail(Errc::invalid_argument);
        }
        while (!opts.empty()) {
            const std::size_t next = opts.find(',');
            const std::string_view opt = opts.substr(0, next);
            opts = next == std::string_view::npos ? std::string_view{} : opts.substr(next + 1);
            if (next != std::string_view::npos && opts.empty()) {
                error = "attachment '" + std::string(spec) + "': empty option after ','";
                return fail(Errc::invalid_argument);
            }
            const std::size_t eq = opt.find('=');
            const std::string_view key = opt.substr(0, eq);
            if (key != "ifname" || eq == std::string_view::npos) {
                error = "attachment '" + std::string(spec) + "': unknown option '" +
                        std::string(opt) + "' (netns takes ifname=NAME)";
                return fail(Errc::invalid_argument);
            }
            if (have_ifname) {
                error = "attachment '" + std::string(spec) + "': ifname given twice";
                return fail(Errc::invalid_argument);
            }
            const std::string_view name = opt.substr(eq + 1);
            if (!valid_ifname(name)) {
                error = "attachment '" + std::string(spec) + "': bad interface name '" +
                        std::string(name) + "' (1-15 characters, no '/', ':' or space)";
                return fail(Errc::invalid_argument);
            }
            ifname = std::string(name);
            have_ifname = true;
        }
        return detail::make_netns_tap(ctx, std::string(spec), std::string(path), std::move(ifname));
    }
    if (scheme == "qemu" || scheme == "vfkit" || scheme == "vhost-user") {
        // The whole rest is the path: a socket path may legitimately contain ',' or '='.
        if (!check_unix_path(rest, spec, error)) return fail(Errc::invalid_argument);
        if (scheme == "qemu")
            return detail::make_qemu_stream(ctx, std::string(spec), std::string(rest));
        if (scheme == "vhost-user")
            return detail::make_vhost_user(ctx, std::string(spec), std::string(rest));
        return detail::make_vfkit_dgram(ctx, std::string(spec), std::string(rest));
    }
    error = "attachment '" + std::string(spec) + "': unknown kind '" + std::string(scheme) +
            "' (netns, qemu, vfkit or vhost-user)";
    return fail(Errc::invalid_argument);
}

}  // namespace slipway::guest
