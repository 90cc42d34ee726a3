// udp_blast: the UDP load generator of bench/e2e/udp.sh. One flow (one 5-tuple), both ends
// bounded in time; results as one line of key=value pairs on stdout.
//
//   udp_blast send DEST SIZE SECS MAX RATE
//       DEST  IP:PORT  connect to it and send;
//             :PORT    bind 0.0.0.0:PORT, wait (at most 15 s) for a hello datagram, connect to
//                      its source and send there: the reply direction of a flow the receiver
//                      opened, which is how traffic reaches a guest behind a NAT.
//       SIZE  UDP payload bytes (16..65507); SECS sending time; MAX datagrams at most;
//       RATE  datagrams per second, 0 for as fast as sendmmsg(2) goes (batches of 64).
//       prints: sent=N errors=E secs=T pps=P
//   udp_blast recv SRC SIZE MAXSECS
//       SRC   :PORT    bind 0.0.0.0:PORT and wait (at most 15 s) for the first datagram;
//             IP:PORT  send a hello to it every 100 ms from an ephemeral port until the first
//                      datagram arrives (at most 15 s).
//       Receives with recvmmsg(2) (batches of 64, SO_RCVBUF raised to 8 MiB) until nothing came
//       for 500 ms, or MAXSECS after the first datagram.
//       prints: recv=N bytes=B secs=T pps=P reordered=R maxseq=M
//       pps is the datagrams after the first batch over the time from the first batch to the
//       last; only datagrams of SIZE bytes that carry this tool's magic count.
// Every datagram starts with an 8-byte magic and an 8-byte sequence number (host byte order).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define WAIT_S 15.0
#define IDLE_S 0.5
#define RCVBUF (8 << 20)

static const uint64_t kMagic = 0x31545342574c53ULL;  // "SLWBST1"
static const char kHello[] = "slw-udp-blast-hello";

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char* what) {
    fprintf(stderr, "udp_blast: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(void) {
    fprintf(stderr,
            "usage: udp_blast send IP:PORT|:PORT SIZE SECS MAX RATE\n"
            "       udp_blast recv IP:PORT|:PORT SIZE MAXSECS\n");
    exit(2);
}

// parse_dest "IP:PORT" or ":PORT" into sa; returns 1 if an IP was given.
static int parse_dest(const char* s, struct sockaddr_in* sa) {
    const char* colon = strrchr(s, ':');
    char ip[64];
    if (!colon || colon - s >= (long)sizeof ip) usage();
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    long port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535) usage();
    sa->sin_port = htons((uint16_t)port);
    if (colon == s) {
        sa->sin_addr.s_addr = htonl(INADDR_ANY);
        return 0;
    }
    memcpy(ip, s, (size_t)(colon - s));
    ip[colon - s] = 0;
    if (inet_pton(AF_INET, ip, &sa->sin_addr) != 1) usage();
    return 1;
}

static void set_timeout(int fd, int opt, double secs) {
    struct timeval tv = {(time_t)secs, (suseconds_t)((secs - (double)(time_t)secs) * 1e6)};
    if (setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv) < 0) die("setsockopt timeout");
}

static void raise_rcvbuf(int fd) {
    int v = RCVBUF;
    // SO_RCVBUFFORCE (root) ignores net.core.rmem_max; SO_RCVBUF is clamped to it.
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}

static int cmd_send(int argc, char** argv) {
    if (argc != 7) usage();
    struct sockaddr_in dst;
    int has_ip = parse_dest(argv[2], &dst);
    long size = strtol(argv[3], NULL, 10);
    double secs = strtod(argv[4], NULL);
    long long max = strtoll(argv[5], NULL, 10);
    double rate = strtod(argv[6], NULL);
    if (size < 16 || size > 65507 || secs <= 0 || max <= 0 || rate < 0) usage();

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    if (!has_ip) {
        // Wait for the receiver's hello; its source is where the datagrams go.
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr*)&dst, sizeof dst) < 0) die("bind");
        raise_rcvbuf(fd);
        set_timeout(fd, SO_RCVTIMEO, 0.1);
        double end = now() + WAIT_S;
        char buf[64];
        for (;;) {
            socklen_t len = sizeof dst;
            ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr*)&dst, &len);
            if (n == (ssize_t)strlen(kHello) && memcmp(buf, kHello, (size_t)n) == 0) break;
            if (now() > end) {
                fprintf(stderr, "udp_blast: no hello within %.0f s\n", WAIT_S);
                printf("sent=0 errors=0 secs=0 pps=0\n");
                return 1;
            }
        }
    }
    if (connect(fd, (struct sockaddr*)&dst, sizeof dst) < 0) die("connect");
    set_timeout(fd, SO_SNDTIMEO, 1.0);  // a blocked send can never outlast the run by much

    static struct mmsghdr msgs[BATCH];
    static struct iovec iov[BATCH];
    char* bufs = calloc(BATCH, (size_t)size);
    if (!bufs) die("calloc");
    for (int i = 0; i < BATCH; i++) {
        memcpy(bufs + (size_t)i * size, &kMagic, 8);
        iov[i].iov_base = bufs + (size_t)i * size;
        iov[i].iov_len = (size_t)size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    long long sent = 0, errors = 0;
    double t0 = now(), end = t0 + secs, t = t0;
    while (sent < max && t < end) {
        if (rate > 0) {
            // Paced: the next datagram is due at t0 + sent / rate; sleep until then.
            double due = t0 + (double)sent / rate;
            if (due > t) {
                if (due > end) break;
                struct timespec ts = {(time_t)due, (long)((due - (double)(time_t)due) * 1e9)};
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            }
        }
        int n = max - sent < BATCH ? (int)(max - sent) : BATCH;
        if (rate > 0) {
            // At most the datagrams due by now, at least one.
            long long due_n = (long long)((now() - t0) * rate) + 1 - sent;
            if (due_n < n) n = due_n < 1 ? 1 : (int)due_n;
        }
        for (int i = 0; i < n; i++) {
            uint64_t seq = (uint64_t)(sent + i);
            memcpy(bufs + (size_t)i * size + 8, &seq, 8);
        }
        int r = sendmmsg(fd, msgs, (unsigned)n, 0);
        if (r > 0) {
            sent += r;
        } else {
            // ENOBUFS (a full queue), ECONNREFUSED (an ICMP error came back), EAGAIN (the
            // send timeout): counted, and sending goes on until the time is up.
            if (r < 0 && errno != ENOBUFS && errno != ECONNREFUSED && errno != EAGAIN &&
                errno != EINTR)
                die("sendmmsg");
            errors++;
        }
        t = now();
    }
    double el = t - t0;
    printf("sent=%lld errors=%lld secs=%.3f pps=%.0f\n", sent, errors, el,
           el > 0 ? (double)sent / el : 0.0);
    return 0;
}

static int cmd_recv(int argc, char** argv) {
    if (argc != 5) usage();
    struct sockaddr_in src;
    int hello = parse_dest(argv[2], &src);
    long size = strtol(argv[3], NULL, 10);
    double maxsecs = strtod(argv[4], NULL);
    if (size < 16 || size > 65507 || maxsecs <= 0) usage();

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    raise_rcvbuf(fd);
    if (!hello) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr*)&src, sizeof src) < 0) die("bind");
    }
    set_timeout(fd, SO_RCVTIMEO, 0.1);

    static struct mmsghdr msgs[BATCH];
    static struct iovec iov[BATCH];
    size_t cap = (size_t)size + 1;  // one byte more, so a longer datagram shows as one
    char* bufs = calloc(BATCH, cap);
    if (!bufs) die("calloc");
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = bufs + (size_t)i * cap;
        iov[i].iov_len = cap;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    long long count = 0, first_batch = 0, bytes = 0, reordered = 0;
    long long maxseq = -1;
    double start = now(), t_first = 0, t_last = 0, next_hello = start;
    for (;;) {
        double t = now();
        if (count == 0) {
            if (t - start > WAIT_S) {
                fprintf(stderr, "udp_blast: nothing received within %.0f s\n", WAIT_S);
                break;
            }
            if (hello && t >= next_hello) {
                sendto(fd, kHello, strlen(kHello), 0, (struct sockaddr*)&src, sizeof src);
                next_hello = t + 0.1;
            }
        } else if (t - t_last > IDLE_S || t - t_first > maxsecs) {
            break;
        }
        int r = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (r <= 0) {
            if (r < 0 && errno != EAGAIN && errno != EINTR && errno != ECONNREFUSED)
                die("recvmmsg");
            continue;
        }
        t = now();
        long long got = 0;
        for (int i = 0; i < r; i++) {
            const char* b = bufs + (size_t)i * cap;
            uint64_t magic, seq;
            if (msgs[i].msg_len != (unsigned)size) continue;
            memcpy(&magic, b, 8);
            if (magic != kMagic) continue;
            memcpy(&seq, b + 8, 8);
            if ((long long)seq < maxseq)
                reordered++;
            else
                maxseq = (long long)seq;
            got++;
            bytes += size;
        }
        if (got == 0) continue;
        if (count == 0) {
            t_first = t;
            first_batch = got;
        }
        count += got;
        t_last = t;
    }
    double el = t_last - t_first;
    printf("recv=%lld bytes=%lld secs=%.3f pps=%.0f reordered=%lld maxseq=%lld\n", count, bytes, el,
           el > 0 ? (double)(count - first_batch) / el : 0.0, reordered, maxseq);
    return count > 0 ? 0 : 1;
}

int main(int argc, char** argv) {
    if (argc < 2) usage();
    if (strcmp(argv[1], "send") == 0) return cmd_send(argc, argv);
    if (strcmp(argv[1], "recv") == 0) return cmd_recv(argc, argv);
    usage();
    return 2;
}
