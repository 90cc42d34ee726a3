/* The C ABI (slipway.h) from plain C: options, a network on its own thread, frame ports that get
 * ARP and DHCP answers from the gateway, forwards, counters, argument checks, teardown. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "slipway.h"

static int failures = 0;

static void fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "c_api_test: FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (last error: %s)\n", slipway_last_error());
    va_end(ap);
    ++failures;
}

/* Fatal: the rest of the test cannot go on. */
#define REQUIRE(cond, ...)     \
    do {                       \
        if (!(cond)) {         \
            fail(__VA_ARGS__); \
            exit(1);           \
        }                      \
    } while (0)
#define CHECK(cond, ...)       \
    do {                       \
        if (!(cond)) {         \
            fail(__VA_ARGS__); \
        }                      \
    } while (0)

static const uint8_t kGuestMac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static const uint8_t kGuestMac2[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x57};
static const uint8_t kGatewayIp[4] = {192, 168, 127, 1};
static const uint8_t kGuestIp[4] = {192, 168, 127, 50};
static const uint8_t kGuestIp2[4] = {192, 168, 127, 51};

static void put16(uint8_t* p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static uint16_t get16(const uint8_t* p) {
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* An ARP request (RFC 826) from `mac`/`ip` asking for the gateway's address: 42 bytes. */
static size_t build_arp_request(uint8_t* f, const uint8_t* mac, const uint8_t* ip) {
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    put16(f + 12, 0x0806);
    put16(f + 14, 1);      /* hardware: Ethernet */
    put16(f + 16, 0x0800); /* protocol: IPv4 */
    f[18] = 6;
    f[19] = 4;
    put16(f + 20, 1); /* request */
    memcpy(f + 22, mac, 6);
    memcpy(f + 28, ip, 4);
    memset(f + 32, 0, 6);
    memcpy(f + 38, kGatewayIp, 4);
    return 42;
}

static int is_arp_reply_for(const uint8_t* f, size_t n, const uint8_t* mac) {
    return n >= 42 && get16(f + 12) == 0x0806 && get16(f + 20) == 2 &&
           memcmp(f + 28, kGatewayIp, 4) == 0 && memcmp(f + 32, mac, 6) == 0 &&
           memcmp(f, mac, 6) == 0;
}

/* RFC 1071 Internet checksum of the IPv4 header. */
static uint16_t ip_checksum(const uint8_t* p, size_t n) {
    uint32_t sum = 0;
    size_t i;
    for (i = 0; i + 1 < n; i += 2)
        sum += (uint32_t)get16(p + i);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* A DHCPDISCOVER (RFC 2131 §4.4.1) broadcast from kGuestMac. */
static size_t build_dhcp_discover(uint8_t* f, uint32_t xid) {
    const size_t bootp_len = 300; /* BOOTP's minimum (RFC 1542 §2.1) */
    const size_t udp_len = 8 + bootp_len;
    const size_t ip_len = 20 + udp_len;
    uint8_t* ip = f + 14;
    uint8_t* udp = ip + 20;
    uint8_t* b = udp + 8;
    uint8_t* o;
    memset(f, 0, 14 + ip_len);
    memset(f, 0xff, 6);
    memcpy(f + 6, kGuestMac, 6);
    put16(f + 12, 0x0800);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)ip_len);
    ip[8] = 64;
    ip[9] = 17;               /* UDP */
    memset(ip + 16, 0xff, 4); /* to 255.255.255.255, from 0.0.0.0 */
    put16(ip + 10, ip_checksum(ip, 20));
    put16(udp, 68);
    put16(udp + 2, 67);
    put16(udp + 4, (uint16_t)udp_len); /* checksum 0: none (RFC 768) */
    b[0] = 1;                          /* BOOTREQUEST */
    b[1] = 1;
    b[2] = 6;
    b[4] = (uint8_t)(xid >> 24);
    b[5] = (uint8_t)(xid >> 16);
    b[6] = (uint8_t)(xid >> 8);
    b[7] = (uint8_t)xid;
    put16(b + 10, 0x8000); /* broadcast reply */
    memcpy(b + 28, kGuestMac, 6);
    o = b + 236;
    o[0] = 99; /* magic cookie (RFC 2131 §3) */
    o[1] = 130;
    o[2] = 83;
    o[3] = 99;
    o[4] = 53; /* message type: DISCOVER */
    o[5] = 1;
    o[6] = 1;
    o[7] = 55; /* parameter request list: subnet mask, router, DNS */
    o[8] = 3;
    o[9] = 1;
    o[10] = 3;
    o[11] = 6;
    o[12] = 255;
    return 14 + ip_len;
}

/* 1 if the frame is a DHCPOFFER for `xid`; its offered address goes to `yiaddr`. */
static int is_dhcp_offer(const uint8_t* f, size_t n, uint32_t xid, uint8_t* yiaddr) {
    size_t ihl, i;
    const uint8_t *udp, *b;
    if (n < 14 + 20 + 8 + 240 || get16(f + 12) != 0x0800 || f[14 + 9] != 17) return 0;
    ihl = (size_t)(f[14] & 0x0f) * 4;
    if (n < 14 + ihl + 8 + 240) return 0;
    udp = f + 14 + ihl;
    if (get16(udp) != 67 || get16(udp + 2) != 68) return 0;
    b = udp + 8;
    if (b[0] != 2 ||
        (((uint32_t)b[4] << 24) | ((uint32_t)b[5] << 16) | ((uint32_t)b[6] << 8) | b[7]) != xid)
        return 0;
    memcpy(yiaddr, b + 16, 4);
    for (i = (size_t)(b + 240 - f); i + 2 < n && f[i] != 255;) {
        if (f[i] == 0) {
            ++i;
            continue;
        }
        if (f[i] == 53 && f[i + 1] == 1) return f[i + 2] == 2;
        i += 2u + f[i + 1];
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef int (*match_fn)(const uint8_t* f, size_t n, void* ctx);

/* Receives frames from `port` until one matches, waiting on its eventfd, at most `secs` seconds. */
static int wait_for_frame(slipway_port* port, match_fn match, void* ctx, double secs) {
    uint8_t buf[2048];
    const double deadline = now_s() + secs;
    struct pollfd pfd;
    pfd.fd = slipway_port_fd(port);
    pfd.events = POLLIN;
    if (pfd.fd < 0) return 0;
    for (;;) {
        ssize_t n;
        while ((n = slipway_port_recv(port, buf, sizeof buf)) > 0)
            if (match(buf, (size_t)n, ctx)) return 1;
        if (n != -EAGAIN) {
            fail("slipway_port_recv: %d", (int)n);
            return 0;
        }
        if (now_s() >= deadline) return 0;
        pfd.revents = 0;
        (void)poll(&pfd, 1, 100);
    }
}

static int match_arp(const uint8_t* f, size_t n, void* ctx) {
    return is_arp_reply_for(f, n, (const uint8_t*)ctx);
}

struct offer_ctx {
    uint32_t xid;
    uint8_t yiaddr[4];
};
static int match_offer(const uint8_t* f, size_t n, void* ctx) {
    struct offer_ctx* c = (struct offer_ctx*)ctx;
    return is_dhcp_offer(f, n, c->xid, c->yiaddr);
}

/* Frames of a port with an offload capability carry a virtio-net header in front. */
static int match_arp_vnet(const uint8_t* f, size_t n, void* ctx) {
    return n > SLIPWAY_VNET_HDR_LEN && f[0] == 0 && f[1] == 0 /* no offload on an ARP reply */ &&
           is_arp_reply_for(f + SLIPWAY_VNET_HDR_LEN, n - SLIPWAY_VNET_HDR_LEN,
                            (const uint8_t*)ctx);
}

struct stats_ctx {
    uint64_t rx_frames, tx_frames, dhcp_offers, counters;
};
static void on_counter(const char* name, uint64_t value, void* ctx) {
    struct stats_ctx* s = (struct stats_ctx*)ctx;
    ++s->counters;
    if (strcmp(name, "port.vm0.rx_frames") == 0) s->rx_frames = value;
    if (strcmp(name, "port.vm0.tx_frames") == 0) s->tx_frames = value;
    if (strcmp(name, "gateway.dhcp_offers") == 0) s->dhcp_offers = value;
}

/* A TCP port on 127.0.0.1 that nobody listens on right now. */
static unsigned free_tcp_port(void) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    unsigned port = 0;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return 0;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr*)&a, sizeof a) == 0 &&
        getsockname(s, (struct sockaddr*)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(s);
    return port;
}

static void test_options(void) {
    slipway_options* o = slipway_options_new();
    REQUIRE(o != NULL, "slipway_options_new");
    CHECK(slipway_options_set(o, "no-such-key", "1") == -EINVAL, "unknown key accepted");
    CHECK(strstr(slipway_last_error(), "no-such-key") != NULL, "error does not name the key");
    CHECK(slipway_options_set(o, "mtu", "12") == -EINVAL, "mtu 12 accepted");
    CHECK(strstr(slipway_last_error(), "mtu") != NULL, "error does not name mtu");
    CHECK(slipway_options_set(o, "subnet", "10.0.0.0") == -EINVAL, "subnet without /len");
    CHECK(slipway_options_set(o, "forward", "tcp:nonsense") == -EINVAL, "bad forward accepted");
    CHECK(slipway_options_set(o, "api", "/tmp/x.sock") == -EINVAL, "slipwayd-only key accepted");
    CHECK(slipway_options_set(o, "no-dhcp", "maybe") == -EINVAL, "bad boolean accepted");
    CHECK(slipway_options_set(NULL, "mtu", "1500") == -EINVAL, "null options accepted");
    /* Network::create's own checks come back through slipway_network_new. */
    CHECK(slipway_options_set(o, "subnet", "10.1.0.0/24") == 0, "subnet");
    CHECK(slipway_options_set(o, "gateway", "192.168.127.1") == 0, "gateway");
    CHECK(slipway_network_new(o) == NULL, "gateway outside the subnet accepted");
    CHECK(strstr(slipway_last_error(), "gateway") != NULL, "error does not name the gateway");
    slipway_options_free(o);
}

static void test_virtio_arguments(slipway_network* net) {
    slipway_virtio_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.name = "virtio0";
    CHECK((slipway_virtio_offered_features() & (1ull << 32)) != 0, "VERSION_1 not offered");
    CHECK(slipway_attach_virtio(net, NULL) == NULL, "null config accepted");
    CHECK(slipway_attach_virtio(net, &cfg) == NULL, "no regions accepted");
    CHECK(strstr(slipway_last_error(), "region") != NULL, "no regions: %s", slipway_last_error());
}

int main(void) {
    slipway_options* o;
    slipway_network* net;
    slipway_port *p0, *p1;
    uint8_t frame[600];
    size_t n;
    struct offer_ctx offer;
    struct stats_ctx st;
    uint32_t fwd_id = 0, other = 0;
    unsigned hport;
    char spec[96];
    int rc;

    printf("libslipway %s\n", slipway_version());
    test_options();

    o = slipway_options_new();
    REQUIRE(o != NULL, "slipway_options_new");
    REQUIRE(slipway_options_set(o, "log-level", "warn") == 0, "log-level");
    REQUIRE(slipway_options_set(o, "subnet", "192.168.127.0/24") == 0, "subnet");
    REQUIRE(slipway_options_set(o, "mtu", "1500") == 0, "mtu");
    REQUIRE(slipway_options_set(o, "no-dns", NULL) == 0, "no-dns");
    REQUIRE(slipway_options_set(o, "icmp", "gateway") == 0, "icmp");
    REQUIRE(slipway_options_set(o, "dhcp-static", "52:54:00:12:34:56=192.168.127.77") == 0,
            "dhcp-static");
    net = slipway_network_new(o);
    slipway_options_free(o);
    REQUIRE(net != NULL, "slipway_network_new");

    /* A port attached before the network runs (the call runs in place)... */
    p0 = slipway_attach_frame_port(net, "vm0", 0, 0);
    REQUIRE(p0 != NULL, "slipway_attach_frame_port vm0");
    REQUIRE(slipway_port_fd(p0) >= 0, "slipway_port_fd");
    CHECK(slipway_attach_frame_port(net, "", 0, 0) == NULL, "empty name accepted");
    CHECK(slipway_attach_frame_port(net, "x", 0x80, 0) == NULL, "unknown caps accepted");
    REQUIRE(slipway_network_start(net) == 0, "slipway_network_start");
    CHECK(slipway_network_start(net) == -EINVAL, "started twice");
    /* ...and one while it runs (posted to the network thread). */
    p1 = slipway_attach_frame_port(net, "vm1", SLIPWAY_CAP_PARTIAL_CSUM, 0);
    REQUIRE(p1 != NULL, "slipway_attach_frame_port vm1");

    /* ARP for the gateway. */
    n = build_arp_request(frame, kGuestMac, kGuestIp);
    CHECK(slipway_port_send(p0, frame, 10) == -EINVAL, "a 10-byte frame accepted");
    REQUIRE(slipway_port_send(p0, frame, n) == 0, "send ARP request");
    CHECK(wait_for_frame(p0, match_arp, (void*)kGuestMac, 10.0), "no ARP reply on vm0");

    /* The same through a port with a virtio-net header. */
    memset(frame, 0, SLIPWAY_VNET_HDR_LEN);
    n = SLIPWAY_VNET_HDR_LEN +
        build_arp_request(frame + SLIPWAY_VNET_HDR_LEN, kGuestMac2, kGuestIp2);
    REQUIRE(slipway_port_send(p1, frame, n) == 0, "send ARP request with a vnet header");
    CHECK(wait_for_frame(p1, match_arp_vnet, (void*)kGuestMac2, 10.0), "no ARP reply on vm1");
    {
        /* A receive buffer too small keeps the frame for the next call. */
        uint8_t small[8], big[256];
        const char* needs;
        ssize_t r;
        /* vm1's broadcast request was flooded to vm0 too: drain it first. */
        while ((r = slipway_port_recv(p0, big, sizeof big)) > 0)
            continue;
        CHECK(r == -EAGAIN, "drain vm0: %d", (int)r);
        n = build_arp_request(frame, kGuestMac, kGuestIp);
        REQUIRE(slipway_port_send(p0, frame, n) == 0, "send ARP request");
        r = -EAGAIN;
        {
            const double deadline = now_s() + 10.0;
            struct pollfd pfd;
            pfd.fd = slipway_port_fd(p0);
            pfd.events = POLLIN;
            while ((r = slipway_port_recv(p0, small, sizeof small)) == -EAGAIN &&
                   now_s() < deadline)
                (void)poll(&pfd, 1, 100);
        }
        CHECK(r == -EMSGSIZE, "recv into 8 bytes: %d", (int)r);
        needs = strstr(slipway_last_error(), "needs ");
        CHECK(needs != NULL, "size not named");
        r = slipway_port_recv(p0, big, sizeof big);
        CHECK(r >= 42 && is_arp_reply_for(big, (size_t)r, kGuestMac), "held frame: %d", (int)r);
        CHECK(needs == NULL || strtol(needs + 6, NULL, 10) == (long)r, "named size is not %d",
              (int)r);
    }

    /* DHCP: DISCOVER gets an OFFER (of the static lease). */
    offer.xid = 0x5a5a1234u;
    n = build_dhcp_discover(frame, offer.xid);
    REQUIRE(slipway_port_send(p0, frame, n) == 0, "send DHCPDISCOVER");
    if (!wait_for_frame(p0, match_offer, &offer, 10.0))
        fail("no DHCPOFFER");
    else
        CHECK(offer.yiaddr[0] == 192 && offer.yiaddr[1] == 168 && offer.yiaddr[2] == 127 &&
                  offer.yiaddr[3] == 77,
              "offered %u.%u.%u.%u, not the static 192.168.127.77", offer.yiaddr[0],
              offer.yiaddr[1], offer.yiaddr[2], offer.yiaddr[3]);

    /* Forwards. */
    hport = free_tcp_port();
    REQUIRE(hport != 0, "no free TCP port");
    snprintf(spec, sizeof spec, "tcp:127.0.0.1:%u=192.168.127.77:80", hport);
    rc = slipway_add_forward(net, spec, &fwd_id);
    CHECK(rc == 0 && fwd_id != 0, "add forward %s: %d", spec, rc);
    rc = slipway_add_forward(net, spec, &other);
    CHECK(rc == -EEXIST, "the same forward twice: %d", rc);
    CHECK(slipway_add_forward(net, "tcp:nonsense", NULL) == -EINVAL, "bad spec accepted");
    CHECK(strstr(slipway_last_error(), "nonsense") != NULL, "bad spec not named");
    CHECK(slipway_remove_forward(net, fwd_id, 1) == 0, "remove forward");
    CHECK(slipway_remove_forward(net, fwd_id, 0) == -ENOENT, "removed twice");

    /* Counters moved. */
    memset(&st, 0, sizeof st);
    CHECK(slipway_stats_foreach(net, on_counter, &st) == 0, "stats");
    CHECK(st.counters > 10, "only %llu counters", (unsigned long long)st.counters);
    CHECK(st.rx_frames >= 3, "port.vm0.rx_frames %llu", (unsigned long long)st.rx_frames);
    CHECK(st.tx_frames >= 3, "port.vm0.tx_frames %llu", (unsigned long long)st.tx_frames);
    CHECK(st.dhcp_offers >= 1, "gateway.dhcp_offers %llu", (unsigned long long)st.dhcp_offers);

    test_virtio_arguments(net);

    /* Detach one port while the network runs, the other after it stopped. */
    CHECK(slipway_detach(net, p1) == 0, "detach vm1");
    CHECK(slipway_network_stop(net) == 0, "stop");
    CHECK(slipway_network_start(net) == -EINVAL, "restarted after stop");
    memset(&st, 0, sizeof st);
    CHECK(slipway_stats_foreach(net, on_counter, &st) == 0 && st.rx_frames >= 3,
          "stats after stop");
    CHECK(slipway_detach(net, p0) == 0, "detach vm0");
    slipway_network_free(net);
    slipway_network_free(NULL);

    if (failures != 0) {
        fprintf(stderr, "c_api_test: %d check(s) failed\n", failures);
        return 1;
    }
    printf("c_api_test: all checks passed\n");
    return 0;
}
