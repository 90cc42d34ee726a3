/* slipway.h: the C ABI of libslipway, for a VMM that embeds slipway in its own process. */
/*
 * A network is built from options (the keys of slipwayd's long flags and TOML file), run on a
 * thread slipway owns, and given guests in two forms:
 *   - a frame port: the VMM sends and receives whole Ethernet frames (its own virtio device model
 *     or a user-mode NIC), woken by an eventfd when frames wait for it;
 *   - a virtqueue pair: the VMM hands slipway its guest memory, the negotiated virtio-net feature
 *     bits and the RX/TX queues with their kick and call eventfds, and slipway runs the virtio-net
 *     device data path itself, as it does for a vhost-user guest, without a socket.
 *
 * Status: every call that can fail returns 0 (or a count) on success and a negative errno value
 * from <errno.h> on failure (-EINVAL a bad argument, -ENOENT no such forward or port, -EEXIST a
 * conflicting forward, -EIO a system call failed, -ENOTSUP not available in this network,
 * -EAGAIN nothing to do now, -ENOBUFS the packet pool is empty, -EMSGSIZE a frame that does not
 * fit, -ENOMEM out of memory). slipway_last_error() then gives a one-line message saying why.
 *
 * Threads: the control calls (everything but slipway_port_send/recv/fd) may come from any thread;
 * they are serialised per network, and those that touch the network (attach, detach, forwards,
 * stats) run on the network's thread while it runs (the caller waits for them). slipway_port_send
 * and slipway_port_recv are the data path of one VMM thread: each may be called from one thread
 * at a time (a sender and a receiver may be two different threads).
 */
#ifndef SLIPWAY_H
#define SLIPWAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h> /* ssize_t */

#if defined(__GNUC__)
#define SLIPWAY_API __attribute__((visibility("default")))
#else
#define SLIPWAY_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slipway_options slipway_options;
typedef struct slipway_network slipway_network;
typedef struct slipway_port slipway_port;

/* The library's version ("0.1.0"). */
SLIPWAY_API const char* slipway_version(void);

/* The message of the last call that failed on this thread ("" if none has). Valid until the next
 * failing call on this thread. -EAGAIN from slipway_port_recv/send sets no message. */
SLIPWAY_API const char* slipway_last_error(void);

/* ---- options ---------------------------------------------------------------------------- */

/* Options with every default (192.168.127.0/24, gateway .1, DHCP and DNS on). NULL: -ENOMEM. */
SLIPWAY_API slipway_options* slipway_options_new(void);
/* Sets one option by the key of slipwayd's long flag without the dashes ("subnet", "gateway",
 * "mtu", "no-dhcp", "dns-upstream", "forward", "dhcp-static", ...). Repeatable keys (attach,
 * forward, dhcp-static, search, dns-upstream, dns-record, allow, deny, egress) add one value per
 * call. Boolean keys (no-dhcp, no-dns, no-host-alias, isolate, no-mac-lock, no-peek-off) take
 * NULL, "", "true", "1", "yes", "on" for true and "false", "0", "no", "off" for false. The value
 * is checked here: -EINVAL with a message naming the key for an unknown key or a bad value. */
SLIPWAY_API int slipway_options_set(slipway_options* opts, const char* key, const char* value);
SLIPWAY_API void slipway_options_free(slipway_options* opts);

/* ---- network ---------------------------------------------------------------------------- */

/* Builds a network (opts NULL: defaults; opts may be freed afterwards). Attachments given with
 * "attach" are started listening. NULL on failure, with slipway_last_error() naming the option. */
SLIPWAY_API slipway_network* slipway_network_new(const slipway_options* opts);
/* Runs the network on a thread slipway owns. -EINVAL if it runs already or was stopped (a stopped
 * network cannot be started again). */
SLIPWAY_API int slipway_network_start(slipway_network* net);
/* Stops the network's thread and waits for it: attachments closed, virtqueues stopped (slipway
 * no longer touches guest memory once this returns). 0 also if it was not running. */
SLIPWAY_API int slipway_network_stop(slipway_network* net);
/* Stops the network if it runs, then frees it and every port still attached. NULL is ignored. */
SLIPWAY_API void slipway_network_free(slipway_network* net);

/* ---- frame ports -------------------------------------------------------------------------- */

/* What a frame port's far side takes (DESIGN §1): */
#define SLIPWAY_CAP_GSO 0x1u          /* GSO super-frames (TCP segmentation left to the VMM) */
#define SLIPWAY_CAP_PARTIAL_CSUM 0x2u /* frames whose checksum is left to the receiver */
/* Frames of a port with either capability carry a 12-byte struct virtio_net_hdr_v1 (virtio 1.2
 * §5.1.6, little-endian) in front, in both directions; frames of a port without are bare
 * Ethernet frames (no FCS). */
#define SLIPWAY_VNET_HDR_LEN 12u

/* Adds a port whose far side is the VMM: `name` (not empty) names it in stats; caps_flags is a
 * combination of SLIPWAY_CAP_*; max_frame is the largest ordinary frame it takes (Ethernet header
 * + payload; 0: the network's MTU + 14). NULL on failure. The port belongs to the network: it is
 * freed by slipway_detach() or slipway_network_free(). */
SLIPWAY_API slipway_port* slipway_attach_frame_port(slipway_network* net, const char* name,
                                                    unsigned caps_flags, uint32_t max_frame);
/* Copies one frame into the network (non-blocking). 0; -EAGAIN when the port's ring is full (the
 * network is not keeping up: retry after it drained), -ENOBUFS when the packet pool is empty,
 * -EMSGSIZE for a frame larger than the pool's largest buffer, -EINVAL for a frame shorter than
 * an Ethernet header (plus the virtio-net header where the port has one), a bad virtio-net header,
 * or a port that is not a frame port. */
SLIPWAY_API int slipway_port_send(slipway_port* port, const void* frame, size_t len);
/* Takes the next frame the network has for the VMM (non-blocking): its length; -EAGAIN when none
 * waits (then wait for slipway_port_fd() to become readable); -EMSGSIZE when `cap` is too small
 * (the frame stays queued; slipway_last_error() says how large it is). */
SLIPWAY_API ssize_t slipway_port_recv(slipway_port* port, void* buf, size_t cap);
/* An eventfd (owned by the port: do not close it) that becomes readable when frames wait for the
 * VMM. slipway_port_recv() resets it when it finds the port empty, so: poll it, then receive until
 * -EAGAIN. -EINVAL for a virtio port. */
SLIPWAY_API int slipway_port_fd(slipway_port* port);

/* ---- virtqueue pairs ------------------------------------------------------------------------ */

/* One region of guest memory, mapped into this process by the VMM. */
typedef struct slipway_mem_region {
    void* host;          /* where the region is mapped here */
    uint64_t guest_addr; /* guest physical address of its first byte */
    uint64_t size;       /* bytes */
} slipway_mem_region;

/* One virtqueue as the guest's driver set it up (virtio 1.2 §2.7, split layout). */
typedef struct slipway_virtqueue {
    uint32_t size;       /* entries: a power of two, 1..32768 */
    uint64_t desc;       /* guest physical address of the descriptor table (16-byte aligned) */
    uint64_t avail;      /* ... of the available ring (2-byte aligned) */
    uint64_t used;       /* ... of the used ring (4-byte aligned) */
    int kick_fd;         /* eventfd the VMM writes when the driver notifies the queue (required) */
    int call_fd;         /* eventfd slipway writes to interrupt the driver (-1: none) */
    uint16_t last_avail; /* where the device resumes (0 for a freshly set-up queue) */
} slipway_virtqueue;

#define SLIPWAY_VIRTIO_RX 0 /* receiveq1 */
#define SLIPWAY_VIRTIO_TX 1 /* transmitq1 */

typedef struct slipway_virtio_config {
    const char* name;                  /* the port's name in stats (not empty) */
    const slipway_mem_region* regions; /* 1..8 regions, not overlapping in guest addresses */
    size_t n_regions;
    uint64_t features;           /* negotiated: a subset of slipway_virtio_offered_features() */
    slipway_virtqueue queues[2]; /* [SLIPWAY_VIRTIO_RX], [SLIPWAY_VIRTIO_TX] */
} slipway_virtio_config;

/* The virtio-net feature bits slipway offers a driver (VERSION_1, MRG_RXBUF, CSUM, GUEST_CSUM,
 * HOST/GUEST_TSO4/6, EVENT_IDX, INDIRECT_DESC, MTU, STATUS). */
SLIPWAY_API uint64_t slipway_virtio_offered_features(void);
/* Adds a virtio-net device over the VMM's queues and starts them. The fds are duplicated (the
 * caller keeps and closes its own); the regions must stay mapped until slipway_detach() or
 * slipway_network_stop(). NULL on failure (a region or ring outside memory, a bad size, features
 * not offered, a bad fd), with the reason in slipway_last_error(). */
SLIPWAY_API slipway_port* slipway_attach_virtio(slipway_network* net,
                                                const slipway_virtio_config* cfg);

/* Removes a port (frame or virtio) and frees it: `port` is invalid afterwards, and no other call
 * on it may be running. A VMM resetting its device detaches and attaches again. -ENOENT if the
 * port is not this network's. */
SLIPWAY_API int slipway_detach(slipway_network* net, slipway_port* port);

/* ---- port forwards and counters ------------------------------------------------------------ */

/* Adds a port forward, `spec` as slipwayd's --forward takes it:
 * "tcp|udp:[HOSTADDR:]HOSTPORT[-END]=GUESTADDR:GUESTPORT[-END]". Its id goes to *id_out (may be
 * NULL). -EINVAL a bad spec, -EEXIST it overlaps a forward of this network, -EIO the host refused
 * the bind (port in use, privileged), -ENOTSUP no NAT engine. */
SLIPWAY_API int slipway_add_forward(slipway_network* net, const char* spec, uint32_t* id_out);
/* Removes forward `id`: its listeners close; its connections are reset if `kill` is non-zero,
 * else they live on. -ENOENT for an unknown id. */
SLIPWAY_API int slipway_remove_forward(slipway_network* net, uint32_t id, int kill);

/* Calls cb once per counter, on the calling thread, with a name of the form "switch.NAME",
 * "port.PORT.NAME" (a virtio port's device counters are "port.PORT.virtio_*"), "gateway.NAME" or
 * "pool.NAME". The values are a snapshot taken on the network thread. cb may call slipway. */
SLIPWAY_API int slipway_stats_foreach(slipway_network* net,
                                      void (*cb)(const char* name, uint64_t value, void* ctx),
                                      void* ctx);

#ifdef __cplusplus
}
#endif

#endif /* SLIPWAY_H */
